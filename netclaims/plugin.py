"""The netclaims pytest plugin (registered through the ``pytest11`` entry point).

Options (group ``netclaims``, each also an ini setting without the leading dashes and with
underscores), fixtures that hand claims trained runs from the store, the judging of what a
claim measured with its rule into a :class:`~netclaims.stats.Verdict` and a pytest outcome,
baseline comparison, progress lines while runs train, and the report (terminal table, JSON,
Markdown, HTML). Records travel from pytest-xdist workers to the controller in each test
report's ``user_properties``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import netclaims.claims
from netclaims import data as datasets
from netclaims._io import write_text
from netclaims.claims import DEFAULT_ARCHS, SCALES, ClaimInfo
from netclaims.compare import compare_reports, compare_table
from netclaims.health import diagnose
from netclaims.numerics import describe, fingerprint_differences, pin_cpu_numerics
from netclaims.preflight import Architecture, NotApplicable, PreflightError, preflight
from netclaims.progress import TrainingProgress
from netclaims.render import terminal_matrix, write_reports
from netclaims.report import (
    Baseline,
    baseline_key,
    build_report,
    compare_to_baseline,
    load_baseline,
    load_report,
    make_baseline,
    terminal_table,
)
from netclaims.stats import Estimate, Evidence, Outcome, Verdict, judge
from netclaims.store import (
    Run,
    Store,
    describe_training,
    provenance,
    stop_workers,
    training_summary,
)
from netclaims.store import default_path as default_store_path
from netclaims.train import RunSpec

pin_cpu_numerics()  # before any kernel of the session runs (see netclaims.numerics)

RECORD = "netclaims_record"


@dataclass
class Settings:
    """The resolved netclaims options of one pytest session."""

    scale: str
    seeds: list[int]
    device: str
    store_path: str | None
    executor: str
    data_root: str | None
    archs: list[str] | None
    report_dir: Path
    baseline: Baseline | None
    save_baseline: Path | None
    compare: dict | None
    inconclusive: str
    dataset: str = "mnist1d"


OPTIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("arch", "linelist", {"action": "append", "metavar": "SPEC",
                          "help": "architecture to run the claims on: a registered model name "
                                  "or module:callable (repeatable; default: mlp, convnet, "
                                  "resnet18)"}),
    ("scale", "string", {"choices": tuple(SCALES), "help": "protocol scale (default: smoke)"}),
    ("seeds", "string", {"type": int, "metavar": "N",
                         "help": "training seeds per condition (default: 3 smoke, 5 paper)"}),
    ("device", "string", {"choices": ("auto", "cpu", "cuda"),
                          "help": "training device (default: cpu at smoke, auto at paper)"}),
    ("store", "string", {"metavar": "DIR", "help": "run store (default: $NETCLAIMS_STORE or "
                                                   "~/.cache/netclaims/store)"}),
    ("executor", "string", {"choices": ("auto", "inline", "process", "ray"),
                            "help": "how zoos are trained (default auto: a process pool, one "
                                    "worker per CPU, when training on the CPU of a machine "
                                    "with several and not under xdist; else inline)"}),
    ("task", "string", {"metavar": "NAME",
                        "help": "dataset the claims train on: mnist1d (default; inputs "
                                "(1, 40)) or digits (scikit-learn's 8x8 images, inputs "
                                "(1, 8, 8)); at paper scale with --netclaims-data-root, "
                                "cifar10 by default"}),
    ("data-root", "string", {"metavar": "DIR",
                             "help": "folder of local datasets such as CIFAR (never "
                                     "downloaded)"}),
    ("report", "string", {"metavar": "DIR", "help": "report folder (default: netclaims-report)"}),
    ("baseline", "string", {"metavar": "FILE", "help": "compare verdicts and estimates with "
                                                       "this baseline"}),
    ("save-baseline", "string", {"metavar": "FILE", "help": "write this run as a baseline"}),
    ("compare", "string", {"metavar": "FILE", "help": "after the run, list which verdicts "
                                                      "and estimates moved from this JSON "
                                                      "report"}),
    ("inconclusive", "string", {"choices": ("fail", "pass"),
                                "help": "outcome of INCONCLUSIVE claims (default: fail)"}),
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("netclaims", "netclaims: executable claims of deep-learning papers")
    for name, ini_type, kwargs in OPTIONS:
        ini_name = f"netclaims_{name.replace('-', '_')}"
        group.addoption(f"--netclaims-{name}", dest=ini_name, default=None, **kwargs)
        parser.addini(ini_name, kwargs["help"], type=ini_type,
                      default=[] if ini_type == "linelist" else None)


def _option(config: pytest.Config, name: str) -> Any:
    key = f"netclaims_{name.replace('-', '_')}"
    value = config.getoption(key)
    if value is None or value == []:
        value = config.getini(key)
    return value if value not in ([], "") else None


def _settings(config: pytest.Config) -> Settings:
    scale = _option(config, "scale") or "smoke"
    if scale not in SCALES:
        raise pytest.UsageError(f"netclaims_scale must be one of {list(SCALES)}, got {scale!r}")
    minimum = SCALES[scale]["min_seeds"]
    raw = _option(config, "seeds")
    try:
        seeds = minimum if raw is None else int(raw)
    except ValueError:
        raise pytest.UsageError(f"netclaims_seeds must be a whole number of seeds, got "
                                f"{raw!r}") from None
    if seeds < minimum:
        raise pytest.UsageError(f"{scale} scale needs at least {minimum} seeds "
                                f"(docs/statistics.md), got --netclaims-seeds {seeds}")
    baseline_path = _option(config, "baseline")
    baseline = None
    if baseline_path:
        try:
            baseline = load_baseline(baseline_path)
        except (OSError, ValueError) as err:
            raise pytest.UsageError(f"--netclaims-baseline {baseline_path}: {err}") from err
    task = _task(config, scale)
    if baseline is not None and baseline.task != task:
        raise pytest.UsageError(f"--netclaims-baseline {baseline_path} was recorded on task "
                                f"{baseline.task!r}; this session trains on {task!r}: compare "
                                "with a baseline recorded on the same task")
    compare_path = _option(config, "compare")
    compare = None
    if compare_path:
        try:
            compare = load_report(compare_path)
        except (OSError, ValueError) as err:
            raise pytest.UsageError(f"--netclaims-compare {compare_path}: {err}") from err
    save = _option(config, "save-baseline")
    if save and Path(save).is_dir():
        raise pytest.UsageError(f"--netclaims-save-baseline {save} is a folder; name the "
                                "baseline file to write")
    root = Path(config.rootpath)
    device = _option(config, "device") or SCALES[scale]["device"]
    executor = _option(config, "executor") or "auto"
    if executor == "auto":
        parallel = device == "cpu" and (os.cpu_count() or 1) > 1 and not _is_worker(config)
        executor = "process" if parallel else "inline"
    return Settings(
        scale=scale, seeds=list(range(seeds)), device=device,
        store_path=_option(config, "store"), executor=executor,
        data_root=_option(config, "data-root"), archs=_option(config, "arch"),
        report_dir=root / (_option(config, "report") or "netclaims-report"),
        baseline=baseline, save_baseline=Path(save) if save else None, compare=compare,
        inconclusive=_option(config, "inconclusive") or "fail",
        dataset=task)


def _task(config: pytest.Config, scale: str) -> str:
    task = _option(config, "task")
    if task is None:
        with_root = _option(config, "data-root") and "dataset_with_root" in SCALES[scale]
        return SCALES[scale]["dataset_with_root" if with_root else "dataset"]
    if task not in datasets.available():
        raise pytest.UsageError(f"--netclaims-task {task!r} is not a dataset; choose one of "
                                f"{datasets.available()}")
    return task


SETTINGS = pytest.StashKey[Settings]()
ARCHITECTURES = pytest.StashKey[dict[str, Architecture]]()
INFO = pytest.StashKey[ClaimInfo]()
VERDICT = pytest.StashKey[Verdict]()
BASELINE_NOTE = pytest.StashKey[str]()
BASELINE_REASON = pytest.StashKey[str]()
FIGURES = pytest.StashKey[list]()
SETUP_SECONDS = pytest.StashKey[float]()
RUN_KEYS = pytest.StashKey[list]()
UNHEALTHY = pytest.StashKey[dict]()
EXCLUDED = pytest.StashKey[dict]()
DIAGNOSES = pytest.StashKey[dict[str, str | None]]()
PAPER_MARKERS = pytest.StashKey[set[str]]()
PROGRESS = pytest.StashKey[TrainingProgress]()
_CURRENT: list[pytest.Item] = []


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _CURRENT[:] = [item]  # before fixtures, so runs trained by fixtures are attributed too


def _note_runs(runs: Sequence[Run], *, read: bool = True) -> None:
    """Remember which store entries the running test used (for its record and for gc), and,
    for those it reads, which are not evidence (:mod:`netclaims.health`)."""
    if _CURRENT:
        item = _CURRENT[0]
        item.stash.setdefault(RUN_KEYS, []).extend(run.spec.key for run in runs)
        if not read:
            return
        unhealthy = item.stash.setdefault(UNHEALTHY, {})
        for run in runs:
            problem = _diagnosis(item.config, run)
            if problem is not None:
                unhealthy[run.spec.key] = f"{run.spec.label}: {problem}"


def _diagnosis(config: pytest.Config, run: Run) -> str | None:
    """Why ``run`` is not evidence, or None (:func:`netclaims.health.diagnose`, once per run
    and session)."""
    diagnoses = config.stash.setdefault(DIAGNOSES, {})
    if run.spec.key not in diagnoses:
        diagnoses[run.spec.key] = diagnose(run)
    return diagnoses[run.spec.key]


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    import matplotlib

    matplotlib.use("Agg")  # figures are files; never open a window
    config.addinivalue_line("markers", "netclaims_claim(info): a netclaims claim (set by "
                                       "netclaims.claims.claim)")
    for name, text in KIND_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    # papers declared before the session (e.g. in claims/conftest.py); read from the module,
    # which owns the registry
    for prefix in list(netclaims.claims.PAPERS):
        _paper_marker(config, prefix)
    config.stash[SETTINGS] = _settings(config)
    if not _is_worker(config):
        config.pluginmanager.register(Collector(config), "netclaims-collector")


def _check_writable(folder: Path, option: str) -> None:
    """Raise a usage error (exit code 4, one line) unless files can be written in
    ``folder`` (created if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".netclaims-probe-"):
            pass
    except OSError as err:
        raise pytest.UsageError(f"{option}: cannot write into {folder} "
                                f"({err.strerror or err})") from None


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings = config.stash[SETTINGS]
    lines = [f"netclaims: {settings.scale} scale, {len(settings.seeds)} seeds, task "
             f"{settings.dataset}, device {settings.device}, executor {settings.executor}, "
             f"store {settings.store_path or default_store_path()}"]
    if settings.data_root and "root" not in datasets.options_of(settings.dataset):
        lines.append(f"netclaims: --netclaims-data-root {settings.data_root} is not used: task "
                     f"{settings.dataset} is generated, not read from disk (choose a task "
                     "such as cifar10 with --netclaims-task to read it)")
    return lines


def _claim_info(item: pytest.Item) -> ClaimInfo | None:
    marker = item.get_closest_marker("netclaims_claim")
    return marker.args[0] if marker is not None else None


def _paper_marker(config: pytest.Config, prefix: str) -> str:
    """Register the marker of a paper (once): ``-m SD`` selects its claims."""
    registered = config.stash.setdefault(PAPER_MARKERS, set())
    if prefix not in registered:
        title = netclaims.claims.PAPERS.get(prefix, prefix)
        config.addinivalue_line("markers", f"{prefix}: the claims of {title}")
        registered.add(prefix)
    return prefix


KIND_MARKERS = {
    "zoo": "claims that train a zoo of runs (train_runs, directly or through a fixture)",
    "single_run": "claims that train single runs only (train_run)",
    "no_training": "claims that train nothing",
}


def pytest_itemcollected(item: pytest.Item) -> None:
    """A claim is selected by its id (``-k SD-7`` or ``-k SD_7``: the test's name need not
    repeat it), by its paper's marker (``-m SD``) and by what it trains (``-m zoo``,
    ``-m single_run``, ``-m no_training``: from the fixtures it uses, directly or not)."""
    info = _claim_info(item)
    if info is not None:
        item.extra_keyword_matches.update({info.id, info.keyword})
        item.add_marker(_paper_marker(item.config, info.paper))
        fixtures = set(getattr(item, "fixturenames", ()))
        kind = "zoo" if "train_runs" in fixtures else \
            "single_run" if "train_run" in fixtures else "no_training"
        item.add_marker(kind)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "arch" not in metafunc.fixturenames:
        return
    settings = metafunc.config.stash[SETTINGS]
    marker = metafunc.definition.get_closest_marker("netclaims_claim")
    info = marker.args[0] if marker is not None else None
    names = settings.archs
    if names is None:
        needs_transformer = info is not None and "transformer" in info.requires
        names = ["transformer"] if needs_transformer else list(DEFAULT_ARCHS)
    metafunc.parametrize("arch", names, indirect=True, ids=[_arch_id(n) for n in names])


def _arch_id(name: str) -> str:
    return name.replace(":", "-").replace(".", "-")


def _arch_name(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return str(callspec.params["arch"]) if callspec is not None and "arch" in callspec.params \
        else None


def _task_data(settings: Settings) -> datasets.Dataset:
    """The session's task: ``--netclaims-task``, or the scale's default (MNIST-1D; CIFAR-10
    from ``--netclaims-data-root`` at paper scale)."""
    options = {}
    if settings.data_root and "root" in datasets.options_of(settings.dataset):
        options["root"] = settings.data_root
    return datasets.load(settings.dataset, **options)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Preflight every architecture the collected claims run on (a misfit stops the session
    here, before anything trains) and mark the claims an architecture cannot run as N/A,
    naming the missing capability. Under pytest-xdist (``--dist loadgroup``) claims of one
    paper and architecture share runs, so they are sent to the same worker; the store's
    locks train each run once whatever the distribution."""
    undeclared = sorted({f"{info.id} ({info.paper})" for info in map(_claim_info, items)
                         if info is not None and info.paper not in netclaims.claims.PAPERS})
    if undeclared:
        raise pytest.UsageError(
            f"claims of undeclared papers: {', '.join(undeclared)}; declare each paper with "
            "netclaims.claims.paper(PREFIX, 'title') in the claims' conftest.py (declared: "
            f"{list(netclaims.claims.PAPERS)})")
    names = list(dict.fromkeys(n for n in map(_arch_name, items) if n is not None))
    settings = config.stash[SETTINGS]
    if names:  # found now, not after hours of training
        _check_writable(settings.report_dir, "--netclaims-report")
        if settings.save_baseline is not None:
            _check_writable(settings.save_baseline.parent, "--netclaims-save-baseline")
    archs = config.stash[ARCHITECTURES] = {}
    misfits = []
    data = _task_data(settings) if names else None
    for name in names:
        try:
            archs[name] = preflight(name, data)
        except PreflightError as err:
            misfits.append(f"netclaims preflight: {err}")
    if misfits:
        raise pytest.UsageError(*misfits)
    for item in items:
        info, name = _claim_info(item), _arch_name(item)
        if info is not None and name is not None:
            why = archs[name].why_not(info.requires)
            if why is not None:
                item.add_marker(pytest.mark.skip(reason=f"not applicable: {info.id} {why}"))
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        info = _claim_info(item)
        if info is not None:
            arch = getattr(item, "callspec", None)
            arch_name = arch.params.get("arch", "") if arch is not None else ""
            item.add_marker(pytest.mark.xdist_group(name=f"{info.paper}-{arch_name}"))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def netclaims_settings(pytestconfig: pytest.Config) -> Settings:
    """The resolved ``--netclaims-*`` options."""
    return pytestconfig.stash[SETTINGS]


@pytest.fixture(scope="session")
def scale(netclaims_settings: Settings) -> str:
    """The scale the claims run at: ``smoke`` (CPU, minutes) or ``paper``."""
    return netclaims_settings.scale


@pytest.fixture(scope="session")
def seeds(netclaims_settings: Settings) -> list[int]:
    """Training seeds per condition (at least 3 at smoke scale, 5 at paper scale)."""
    return list(netclaims_settings.seeds)


@pytest.fixture(scope="session")
def device(netclaims_settings: Settings) -> str:
    return netclaims_settings.device


@pytest.fixture(scope="session")
def store(netclaims_settings: Settings) -> Store:
    """The run store shared by tests, xdist workers and sessions."""
    return Store(netclaims_settings.store_path, data_root=netclaims_settings.data_root)


@pytest.fixture(scope="session")
def claims_data(netclaims_settings: Settings) -> datasets.Dataset:
    """The session's task (``--netclaims-task``; default MNIST-1D, or at paper scale CIFAR-10
    from ``--netclaims-data-root`` when given)."""
    return _task_data(netclaims_settings)


@pytest.fixture
def arch(request: pytest.FixtureRequest) -> Architecture:
    """The architecture this claim runs on (parametrized by ``--netclaims-arch``), as the
    session's preflight found it."""
    return request.config.stash[ARCHITECTURES][request.param]


def _progress(config: pytest.Config) -> TrainingProgress:
    """The session's progress display (one per session), writing through the terminal
    reporter with capture suspended, so that it shows without ``-s``; silent in xdist
    workers (their output is not shown live)."""
    if PROGRESS not in config.stash:
        reporter = None if _is_worker(config) else \
            config.pluginmanager.get_plugin("terminalreporter")
        capture = config.pluginmanager.get_plugin("capturemanager")

        def uncaptured(fn: Callable[..., None]) -> Callable[..., None]:
            def call(*args: Any) -> None:
                if reporter is None:
                    return
                with capture.global_and_fixture_disabled() if capture is not None \
                        else contextlib.nullcontext():
                    fn(*args)
                    reporter.flush()
            return call

        live = reporter is not None and bool(reporter.isatty) and reporter.hasmarkup

        def start_or_rewrite(line: str) -> None:
            reporter.ensure_newline()  # leave pytest's "file.py ..." line intact
            width = shutil.get_terminal_size().columns
            reporter.rewrite(line if len(line) < width else line[:width - 2] + "…",
                             erase=True)  # a wrapped line could not be rewritten

        config.stash[PROGRESS] = TrainingProgress(
            write=uncaptured(lambda line: reporter.write_line(line)),
            rewrite=uncaptured(start_or_rewrite) if live else None,
            end_line=uncaptured(lambda: reporter.write("\n")) if live else None)
    progress = config.stash[PROGRESS]
    item = _CURRENT[0] if _CURRENT else None
    info = _claim_info(item) if item is not None else None
    arch = _arch_name(item) if item is not None else None
    progress.context = f"{info.id} on {arch}" if info is not None and arch else ""
    return progress


def _spec(settings: Settings, arch: Architecture | str, fields: dict[str, Any]) -> RunSpec:
    scaled = SCALES[settings.scale]["training"].get(str(arch), {})
    return RunSpec(model=str(arch), **{"dataset": settings.dataset, **scaled, **fields})


@pytest.fixture(scope="session")
def run_spec(netclaims_settings: Settings) -> Callable[..., RunSpec]:
    """``run_spec(arch, **spec_fields) -> RunSpec``: the spec ``train_run`` would train, with
    the scale's overrides and the registry's defaults resolved (e.g. to read the number of
    epochs before choosing checkpoints)."""
    return lambda arch, **fields: _spec(netclaims_settings, arch, fields)


@pytest.fixture(scope="session")
def train_run(netclaims_settings: Settings, store: Store,
              pytestconfig: pytest.Config) -> Callable[..., Run]:
    """``train_run(arch, **spec_fields) -> Run``: one trained net, from the store or trained
    now (``dataset`` defaults to the scale's dataset; checkpoints through training via
    ``checkpoint_epochs`` / ``checkpoint_steps``)."""
    def make(arch: Architecture | str, **fields: Any) -> Run:
        spec = _spec(netclaims_settings, arch, fields)
        run = store.run(spec, device=netclaims_settings.device,
                        progress=_progress(pytestconfig))
        _note_runs([run])
        return run
    return make


@pytest.fixture(scope="session")
def train_runs(netclaims_settings: Settings, store: Store,
               pytestconfig: pytest.Config) -> Callable[..., list[Run]]:
    """``train_runs(arch, [fields, ...], derive=None, read=True) -> [Run, ...]``: a zoo,
    trained by the session's executor (``--netclaims-executor``); combine with
    :func:`netclaims.claims.grid` for hyperparameter grids with pairing rules. ``derive``
    measures each newly trained run in the worker that trained it (see
    :meth:`netclaims.store.Store.runs`). The claim is judged on the health of the runs it
    reads: all of them, or with ``read=False`` (a fixture that trains more than one claim
    reads) only those later passed to :func:`read_runs`."""
    def make(arch: Architecture | str, variants: Sequence[dict[str, Any]],
             derive: Callable[[Run], Any] | None = None, *, read: bool = True) -> list[Run]:
        specs = [_spec(netclaims_settings, arch, v) for v in variants]
        runs = store.runs(specs, executor=netclaims_settings.executor,
                          device=netclaims_settings.device,
                          progress=_progress(pytestconfig), derive=derive)
        _note_runs(runs, read=read)
        return runs
    return make


@pytest.fixture(scope="session")
def read_runs() -> Callable[[Sequence[Run]], Sequence[Run]]:
    """``read_runs(runs) -> runs``: mark runs as read by the running claim, which is then
    INCONCLUSIVE if one of them did not train (:mod:`netclaims.health`)."""
    def read(runs: Sequence[Run]) -> Sequence[Run]:
        _note_runs(runs)
        return runs
    return read


@pytest.fixture(scope="session")
def keep_healthy(pytestconfig: pytest.Config) -> Callable[[Sequence[Run]], list[Run]]:
    """``keep_healthy(runs) -> runs``: the runs that trained, read by the running claim; the
    others are left out of its evidence and listed in its record (``excluded_runs``) and
    report. For zoos whose members are interchangeable samples of a design (a model that
    did not train is no data point), as the papers leave out such configurations (the
    intraclass-clustering paper: the VGG variants that could not reach ~100% training
    accuracy). Where every condition is needed, read all runs instead: one that did not
    train makes the claim INCONCLUSIVE."""
    def keep(runs: Sequence[Run]) -> list[Run]:
        healthy = [run for run in runs if _diagnosis(pytestconfig, run) is None]
        if _CURRENT:
            excluded = _CURRENT[0].stash.setdefault(EXCLUDED, {})
            excluded.update({run.spec.key: f"{run.spec.label}: "
                                           f"{_diagnosis(pytestconfig, run)}"
                             for run in runs if run not in healthy})
        _note_runs(healthy)
        return healthy
    return keep


@pytest.fixture(scope="session")
def session_claims(request: pytest.FixtureRequest) -> frozenset[tuple[str, str]]:
    """``(claim id, architecture)`` of every claim this session runs (after ``-k`` and
    other deselection), so that a fixture starts only the zoos some claim will read."""
    selected = set()
    for item in request.session.items:
        info, name = _claim_info(item), _arch_name(item)
        if info is not None and name is not None and item.get_closest_marker("skip") is None:
            selected.add((info.id, name))
    return frozenset(selected)


@pytest.fixture(scope="session")
def prefetch_runs(netclaims_settings: Settings, store: Store,
                  session_claims: frozenset[tuple[str, str]]) -> Callable[..., None]:
    """``prefetch_runs(arch, [fields, ...], derive=None, *, readers=(claim ids))``: start
    training a zoo that a later claim needs in the session's process pool and return at
    once, so that the pool stays busy while the current zoo finishes; the later
    ``train_runs`` of those runs waits for them. Nothing happens unless one of ``readers``
    runs on ``arch`` in this session (:func:`session_claims`), or with the inline or Ray
    executors."""
    def start(arch: Architecture | str, variants: Sequence[dict[str, Any]],
              derive: Callable[[Run], Any] | None = None, *,
              readers: Iterable[str]) -> None:
        read = any((cid, str(arch)) in session_claims for cid in readers)
        if read and netclaims_settings.executor == "process":
            store.prefetch([_spec(netclaims_settings, arch, v) for v in variants],
                           device=netclaims_settings.device, derive=derive)
    return start


@pytest.fixture
def save_figure(request: pytest.FixtureRequest,
                netclaims_settings: Settings) -> Callable[[Any, str], Path]:
    """``save_figure(fig, name) -> path``: save a matplotlib figure for this claim's report
    entry (PNG in the report's ``figures/`` folder) and close it."""
    import matplotlib.pyplot as plt

    figures = request.node.stash.setdefault(FIGURES, [])
    folder = netclaims_settings.report_dir / "figures"

    def save(fig: Any, name: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in
                       f"{request.node.name}-{name}")
        path = folder / f"{stem}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        figures.append(str(path.relative_to(netclaims_settings.report_dir)))
        return path
    return save


# --------------------------------------------------------------------------- outcomes


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run a claim, keep its verdict, and turn the verdict into the test's outcome."""
    info = _claim_info(pyfuncitem)
    if info is None:
        return None
    pyfuncitem.stash[INFO] = info
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    try:
        measured = pyfuncitem.obj(**args)
    except NotApplicable as reason:
        # reported at the claim's own location, not the plugin's
        raise pytest.skip.Exception(f"not applicable: {reason}",
                                    _use_item_location=True) from None
    except Exception:
        if not pyfuncitem.stash.get(UNHEALTHY, None):
            raise
        measured = None  # a measure of a run that did not train may well be undefined
    unhealthy = pyfuncitem.stash.get(UNHEALTHY, {})
    if unhealthy:
        verdict = _not_evidence(info, list(unhealthy.values()))
    elif isinstance(measured, Estimate | Evidence):
        verdict = judge(info.id, measured, info.rule, finding=info.finding)
    else:
        raise TypeError(f"claim {info.id} returned {type(measured).__name__}; a claim "
                        "returns what it measured: a netclaims.stats.Estimate, or "
                        "netclaims.stats.Evidence with the data behind it (the plugin judges "
                        "it with the rule given to @claim)")
    pyfuncitem.stash[VERDICT] = verdict
    settings = pyfuncitem.config.stash[SETTINGS]
    message = verdict.summary()
    failed = verdict.outcome in (Outcome.FAIL, Outcome.ERROR) or (
        verdict.outcome is Outcome.INCONCLUSIVE and settings.inconclusive == "fail")
    if settings.baseline is not None:
        record = _record(pyfuncitem, verdict.outcome.value, message)
        entry = settings.baseline.claims.get(baseline_key(record))
        comparison = compare_to_baseline(record, entry,
                                         same_numerics=not _baseline_differences(settings))
        if comparison.departure is not None:
            pytest.fail(f"{message}\nbaseline: {comparison.departure}", pytrace=False)
        if comparison.note is not None:
            pyfuncitem.stash[BASELINE_NOTE] = comparison.note
        if entry is not None and entry.get("reason"):
            pyfuncitem.stash[BASELINE_REASON] = entry["reason"]
        if entry is not None and failed:  # a recorded non-replication, unchanged
            failed = False
    if failed:
        pytest.fail(message, pytrace=False)
    return True


def _not_evidence(info: ClaimInfo, problems: list[str]) -> Verdict:
    """INCONCLUSIVE: some runs the claim read did not train (:mod:`netclaims.health`)."""
    listed = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more"
                                        if len(problems) > 3 else "")
    return Verdict(claim_id=info.id, finding=info.finding, statistic="-", estimate=math.nan,
                   ci_low=math.nan, ci_high=math.nan, n=0, p_value=None,
                   rule=info.rule.describe(), outcome=Outcome.INCONCLUSIVE,
                   reason=f"{len(problems)} run(s) it reads are not evidence: {listed}",
                   details={"unhealthy_runs": problems})


def _record(item: pytest.Item, verdict: str, message: str, seconds: float = 0.0) -> dict:
    info: ClaimInfo = item.stash[INFO]
    settings = item.config.stash[SETTINGS]
    callspec = getattr(item, "callspec", None)
    arch = str(callspec.params.get("arch", "-")) if callspec is not None else "-"
    out: dict[str, Any] = {"id": info.id, "paper": info.paper,
                           "paper_title": info.paper_title, "finding": info.finding,
                           "summary": info.summary,
                           "arch": arch, "scale": settings.scale, "verdict": verdict,
                           "message": message, "seconds": round(seconds, 3),
                           "nodeid": item.nodeid, "figures": item.stash.get(FIGURES, []),
                           "runs": sorted(set(item.stash.get(RUN_KEYS, []))),
                           **_source(item, settings.report_dir)}
    if BASELINE_NOTE in item.stash:
        out["baseline_note"] = item.stash[BASELINE_NOTE]
    if BASELINE_REASON in item.stash:
        out["baseline_reason"] = item.stash[BASELINE_REASON]
    if item.stash.get(EXCLUDED, None):
        out["excluded_runs"] = sorted(item.stash[EXCLUDED].values())
    v = item.stash.get(VERDICT, None)
    if v is not None:
        def number(x: float) -> float | None:
            return x if math.isfinite(x) else None
        out.update(statistic=v.statistic, estimate=number(v.estimate),
                   ci_low=number(v.ci_low), ci_high=number(v.ci_high), n=v.n,
                   p_value=v.p_value, threshold=v.rule, method=v.method, details=v.details,
                   reason=v.reason)
    return out


def _source(item: pytest.Item, report_dir: Path) -> dict[str, str]:
    """Where the claim is written: ``file:line`` from the root, and the file relative to the
    report's folder (the report links it)."""
    path, line, _ = item.location
    absolute = Path(item.config.rootpath) / path
    return {"source": f"{path}:{(line or 0) + 1}",
            "source_href": os.path.relpath(absolute, report_dir)}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    outcome = yield
    report = outcome.get_result()
    info = _claim_info(item)
    if info is None:
        return
    item.stash.setdefault(INFO, info)
    if report.when == "setup":
        item.stash[SETUP_SECONDS] = report.duration
        if report.passed:
            return
    if report.when == "teardown":
        return
    seconds = item.stash.get(SETUP_SECONDS, 0.0) + (report.duration if report.when == "call"
                                                   else 0.0)
    verdict = item.stash.get(VERDICT, None)
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        record = _record(item, "N/A", reason.removeprefix("Skipped: "), seconds)
    elif verdict is not None:
        text = verdict.summary()
        if report.failed and "baseline:" in str(report.longrepr):
            text = str(report.longrepr)
        record = _record(item, verdict.outcome.value, text, seconds)
    else:
        crash = call.excinfo.exconly() if call.excinfo is not None else "no verdict"
        record = _record(item, "ERROR", crash.splitlines()[0][:500], seconds)
    report.user_properties.append((RECORD, json.dumps(record, default=str)))
    # --junitxml reads properties from the teardown report, which copies the item's
    item.user_properties.extend((f"netclaims_{key}", record[key]) for key in (
        "id", "verdict", "estimate", "ci_low", "ci_high", "n", "p_value")
        if record.get(key) is not None)


class Collector:
    """Gathers records on the controller, prints the summary table and writes the report."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.records: list[dict] = []
        self.paths: dict[str, Path] = {}
        self.started = time.time()
        self.training: dict[str, Any] | None = None
        self.write_error: str | None = None
        self.report: dict[str, Any] | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == RECORD:
                self.records.append(json.loads(value))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # runs prefetched for claims that did not get to read them (-x, Ctrl-C, a crash)
        # stop here: nothing trains after the summary; they resume when next asked for
        stop_workers()
        if not self.records:
            return
        settings = self.config.stash[SETTINGS]
        runs = sorted({key for r in self.records for key in r.get("runs", [])})
        self.training = training_summary(Store(settings.store_path), runs, self.started)
        prov = {**provenance(settings.device), "git_commit": _git_commit(self.config.rootpath),
                "scale": settings.scale, "task": settings.dataset, "seeds": settings.seeds,
                "architectures": settings.archs or list(DEFAULT_ARCHS),
                "scaled_training": SCALES[settings.scale]["training"],
                "command": _command_line(),
                "wall_seconds": round(time.time() - self.started, 1),
                "training": self.training}
        report = self.report = build_report(self.records, prov)
        report["runs"] = runs
        try:
            self.paths = write_reports(settings.report_dir, report)
            if settings.save_baseline is not None:
                write_text(settings.save_baseline,
                           json.dumps(make_baseline(report), indent=2) + "\n")
                self.paths["baseline"] = settings.save_baseline
        except OSError as err:  # e.g. the disk filled up during the session
            self.write_error = f"{err.filename or ''}: {err.strerror or err}"
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.records:
            return
        terminalreporter.write_sep("=", "netclaims")
        if self.report is not None:
            terminalreporter.write_line(terminal_matrix(self.report) + "\n")
        terminalreporter.write_line(terminal_table(self.records))
        settings = self.config.stash[SETTINGS]
        if self.training is not None:
            terminalreporter.write_line(f"runs: {describe_training(self.training)}")
        terminalreporter.write_line(f"numerics: {describe(_numerics(settings.device))}")
        if settings.baseline is not None:
            differences = _baseline_differences(settings)
            if differences:
                terminalreporter.write_line(
                    "baseline: reversed verdicts fail; one-step verdict changes and estimate "
                    "moves are only noted, for the baseline was recorded on other numerics "
                    f"({'; '.join(differences)})")
            else:
                terminalreporter.write_line("baseline: verdicts and estimates compared "
                                            "(recorded on the same numerics)")
            for r in self.records:
                if r.get("baseline_note"):
                    terminalreporter.write_line(f"  {r['id']} {r['arch']}: {r['baseline_note']}")
        if settings.compare is not None and self.report is not None:
            terminalreporter.write_sep("-", "compared with --netclaims-compare")
            terminalreporter.write_line(compare_table(compare_reports(settings.compare,
                                                                      self.report)))
        for kind, path in self.paths.items():
            terminalreporter.write_line(f"{kind}: {path}")
        if self.write_error is not None:
            terminalreporter.write_line(f"netclaims: the report could not be written "
                                        f"({self.write_error}); the table above is this "
                                        "session's result", red=True)


@functools.cache
def _numerics(device: str) -> dict[str, Any]:
    return provenance(device)["numerics"]


def _baseline_differences(settings: Settings) -> list[str]:
    """How this session's numerics differ from those that recorded the baseline."""
    assert settings.baseline is not None
    return fingerprint_differences(settings.baseline.numerics, _numerics(settings.device))


def _command_line() -> str:
    program = Path(sys.argv[0]).name
    head = ["python", "-m", "pytest"] if program == "__main__.py" else [program]
    return " ".join(shlex.quote(a) for a in [*head, *sys.argv[1:]])


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
