"""The netclaims pytest plugin (registered through the ``pytest11`` entry point): its hooks.

Collection (options resolved, every architecture preflighted, claims it cannot run marked
N/A, papers and claim kinds as markers, claims parametrized over architectures), the judging
of what a claim measured with its rule into a :class:`~netclaims.stats.Verdict`, the
baseline comparison and the pytest outcome. The rest lives beside it: options in
:mod:`netclaims.settings`, the session's state in :mod:`netclaims.session`, fixtures in
:mod:`netclaims.fixtures`, records, reports and the summary in :mod:`netclaims.records`.
"""

from __future__ import annotations

import contextlib
import inspect
import json
from typing import Any

import pytest

import netclaims.claims
from netclaims import data as datasets
from netclaims.claims import DEFAULT_ARCHS
from netclaims.numerics import pin_cpu_numerics
from netclaims.plan import NotTrainedError
from netclaims.preflight import NotApplicable, PreflightError, preflight
from netclaims.records import (
    RECORD,
    Collector,
    PlanSummary,
    baseline_differences,
    make_record,
    not_evidence,
)
from netclaims.render import overrides_note
from netclaims.report import (
    baseline_key,
    compare_to_baseline,
)
from netclaims.session import (
    ARCHITECTURES,
    BASELINE_NOTE,
    BASELINE_REASON,
    CURRENT,
    INFO,
    PAPER_MARKERS,
    SETTINGS,
    SETUP_SECONDS,
    UNHEALTHY,
    VERDICT,
    arch_name,
    claim_info,
)
from netclaims.settings import (
    OPTIONS,
    check_writable,
    is_worker,
    resolve_settings,
    task_data,
)
from netclaims.stats import Estimate, Evidence, Outcome, judge
from netclaims.store import default_path as default_store_path

pytest_plugins = ["netclaims.fixtures"]

pin_cpu_numerics()  # before any kernel of the session runs (see netclaims.numerics)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("netclaims", "netclaims: executable claims of deep-learning papers")
    for name, ini_type, kwargs in OPTIONS:
        ini_name = f"netclaims_{name.replace('-', '_')}"
        group.addoption(f"--netclaims-{name}", dest=ini_name, default=None, **kwargs)
        parser.addini(ini_name, kwargs["help"], type=ini_type,
                      default=[] if ini_type == "linelist" else None)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    CURRENT[:] = [item]  # before fixtures, so runs trained by fixtures are attributed too


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
    config.stash[SETTINGS] = settings = resolve_settings(config)
    if not is_worker(config):
        config.pluginmanager.register(PlanSummary(config) if settings.plan else Collector(config),
                                      "netclaims-collector")


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings = config.stash[SETTINGS]
    lines = [f"netclaims: {settings.scale} scale, {len(settings.seeds)} seeds, task "
             f"{settings.dataset}, device {settings.device}, executor {settings.executor}"
             f"{' (seeds as ensembles)' if settings.ensemble else ''}, "
             f"store {settings.store_path or default_store_path()}"]
    if settings.overrides:
        lines.append(f"netclaims: {overrides_note(settings.overrides)} (--netclaims-override)")
    if settings.data_root and "root" not in datasets.options_of(settings.dataset):
        lines.append(f"netclaims: --netclaims-data-root {settings.data_root} is not used: task "
                     f"{settings.dataset} is generated, not read from disk (choose a task "
                     "such as cifar10 with --netclaims-task to read it)")
    return lines


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
    info = claim_info(item)
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Preflight every architecture the collected claims run on (a misfit stops the session
    here, before anything trains) and mark the claims an architecture cannot run as N/A,
    naming the missing capability. Under pytest-xdist (``--dist loadgroup``) claims of one
    paper and architecture share runs, so they are sent to the same worker; the store's
    locks train each run once whatever the distribution."""
    undeclared = sorted({f"{info.id} ({info.paper})" for info in map(claim_info, items)
                         if info is not None and info.paper not in netclaims.claims.PAPERS})
    if undeclared:
        raise pytest.UsageError(
            f"claims of undeclared papers: {', '.join(undeclared)}; declare each paper with "
            "netclaims.claims.paper(PREFIX, 'title') in the claims' conftest.py (declared: "
            f"{list(netclaims.claims.PAPERS)})")
    names = list(dict.fromkeys(n for n in map(arch_name, items) if n is not None))
    settings = config.stash[SETTINGS]
    if names:  # found now, not after hours of training
        check_writable(settings.report_dir, "--netclaims-report")
        if settings.save_baseline is not None:
            check_writable(settings.save_baseline.parent, "--netclaims-save-baseline")
    archs = config.stash[ARCHITECTURES] = {}
    misfits = []
    if names:
        data = task_data(settings)
        for arch in names:
            try:
                archs[arch] = preflight(arch, data)
            except PreflightError as err:
                misfits.append(f"netclaims preflight: {err}")
    if misfits:
        raise pytest.UsageError(*misfits)
    for item in items:
        info, name = claim_info(item), arch_name(item)
        if info is not None and name is not None:
            why = archs[name].why_not(info.requires)
            if why is not None:
                item.add_marker(pytest.mark.skip(reason=f"not applicable: {info.id} {why}"))
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        info = claim_info(item)
        if info is not None:
            item.add_marker(pytest.mark.xdist_group(name=f"{info.paper}-{arch_name(item) or ''}"))


# --------------------------------------------------------------------------- outcomes


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run a claim, keep its verdict, and turn the verdict into the test's outcome."""
    info = claim_info(pyfuncitem)
    if info is None:
        return None
    pyfuncitem.stash[INFO] = info
    wanted = inspect.signature(pyfuncitem.obj).parameters
    args = {name: value for name, value in pyfuncitem.funcargs.items() if name in wanted}
    if pyfuncitem.config.stash[SETTINGS].plan:
        with contextlib.suppress(NotTrainedError):
            pyfuncitem.obj(**args)
        pytest.skip("planned (--netclaims-plan): nothing trained")
    try:
        measured = pyfuncitem.obj(**args)
    except NotApplicable as reason:
        pytest.skip(f"not applicable: {reason}")
    except Exception:
        if not pyfuncitem.stash.get(UNHEALTHY, None):
            raise
        measured = None  # a measure of a run that did not train may well be undefined
    unhealthy = pyfuncitem.stash.get(UNHEALTHY, {})
    if unhealthy:
        verdict = not_evidence(info, list(unhealthy.values()))
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
        record = make_record(pyfuncitem, verdict.outcome.value, message)
        entry = settings.baseline.claims.get(baseline_key(record))
        comparison = compare_to_baseline(record, entry,
                                         same_numerics=not baseline_differences(settings))
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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    outcome = yield
    report = outcome.get_result()
    info = claim_info(item)
    if info is None:
        return
    if item.config.stash[SETTINGS].plan:  # no verdicts: the plan is the report
        if call.excinfo is not None and (report.skipped
                                         or call.excinfo.errisinstance(NotTrainedError)):
            report.outcome = "skipped"  # a fixture may have read a stand-in run
            report.longrepr = (str(item.path), (item.location[1] or 0) + 1,
                               "planned (--netclaims-plan): nothing trained")
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
        if isinstance(report.longrepr, tuple):  # (path, line, reason): the claim's, not ours
            report.longrepr = (str(item.path), (item.location[1] or 0) + 1, reason)
        record = make_record(item, "N/A", reason.removeprefix("Skipped: "), seconds)
    elif verdict is not None:
        text = verdict.summary()
        if report.failed and "baseline:" in str(report.longrepr):
            text = str(report.longrepr)
        record = make_record(item, verdict.outcome.value, text, seconds)
    else:
        crash = call.excinfo.exconly() if call.excinfo is not None else "no verdict"
        record = make_record(item, "ERROR", crash.splitlines()[0][:500], seconds)
    report.user_properties.append((RECORD, json.dumps(record, default=str)))
    # --junitxml reads properties from the teardown report, which copies the item's
    item.user_properties.extend((f"netclaims_{key}", record[key]) for key in (
        "id", "verdict", "estimate", "ci_low", "ci_high", "n", "p_value")
        if record.get(key) is not None)


