"""The fixtures claims use: the session's settings, architectures and trained runs from the
store (single runs, zoos through the executor, zoos started ahead of time), the health of
what a claim reads, and figures for its report entry."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from netclaims import data as datasets
from netclaims import models
from netclaims.preflight import Architecture
from netclaims.run import Run
from netclaims.session import (
    ARCHITECTURES,
    CURRENT,
    EXCLUDED,
    FIGURES,
    SETTINGS,
    arch_name,
    check_long_training,
    claim_info,
    diagnosis,
    note_runs,
    planned,
    progress_display,
)
from netclaims.settings import Settings, task_data
from netclaims.spec import RunSpec, resolved
from netclaims.store import Store


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
def seeds_for(netclaims_settings: Settings) -> Callable[[Mapping[str, int]], list[int]]:
    """``seeds_for({"smoke": 5})``: the training seeds of a protocol whose effects need more
    seeds than the scale's default to be decided and that is cheap enough to afford them: its
    number at the session's scale, or the scale's default where that is larger; a
    ``--netclaims-seeds`` the user gave wins. A claims module asks for it by overriding
    ``seeds``: ``def seeds(seeds_for): return seeds_for(SEEDS)``."""
    def resolve(counts: Mapping[str, int]) -> list[int]:
        if netclaims_settings.seeds_given:
            return list(netclaims_settings.seeds)
        return list(range(max(len(netclaims_settings.seeds),
                              counts.get(netclaims_settings.scale, 0))))
    return resolve


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
    return task_data(netclaims_settings)


@pytest.fixture
def arch(request: pytest.FixtureRequest) -> Architecture:
    """The architecture this claim runs on (parametrized by ``--netclaims-arch``), as the
    session's preflight found it."""
    return request.config.stash[ARCHITECTURES][request.param]


def _spec(settings: Settings, arch: Architecture | str, fields: dict[str, Any]) -> RunSpec:
    scaled = models.scale_fields(str(arch), settings.scale)
    merged = {"dataset": settings.dataset, **scaled, **fields}
    forced = settings.overrides
    if "epochs" in forced and merged.get("checkpoint_epochs"):
        # the protocol's checkpoints move with the end, at the same share of training
        planned = resolved(RunSpec(model=str(arch), **merged).epochs, "epochs")
        merged["checkpoint_epochs"] = sorted({
            0 if e == 0 else min(forced["epochs"], max(1, round(e * forced["epochs"] / planned)))
            for e in merged["checkpoint_epochs"]})
    return RunSpec(model=str(arch), **{**merged, **forced})


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
        if netclaims_settings.plan:
            return cast(Run, planned(pytestconfig, [spec])[0])  # a stand-in: plan mode
        check_long_training(pytestconfig, store, [spec])
        run = store.run(spec, device=netclaims_settings.device,
                        progress=progress_display(pytestconfig))
        note_runs([run])
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
        if netclaims_settings.plan:
            return cast(list[Run], planned(pytestconfig, specs))  # stand-ins: plan mode
        check_long_training(pytestconfig, store, specs)
        runs = store.runs(specs, executor=netclaims_settings.executor,
                          device=netclaims_settings.device,
                          progress=progress_display(pytestconfig), derive=derive,
                          ensemble=netclaims_settings.ensemble)
        note_runs(runs, read=read)
        return runs
    return make


@pytest.fixture(scope="session")
def read_runs() -> Callable[[Sequence[Run]], Sequence[Run]]:
    """``read_runs(runs) -> runs``: mark runs as read by the running claim, which is then
    INCONCLUSIVE if one of them did not train (:mod:`netclaims.health`)."""
    def read(runs: Sequence[Run]) -> Sequence[Run]:
        note_runs(runs)
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
        if pytestconfig.stash[SETTINGS].plan:  # stand-ins: nothing to diagnose
            return list(runs)
        problems = {run.spec.key: diagnosis(pytestconfig, run) for run in runs}
        healthy = [run for run in runs if problems[run.spec.key] is None]
        if CURRENT:
            excluded = CURRENT[0].stash.setdefault(EXCLUDED, {})
            excluded.update({run.spec.key: f"{run.spec.label}: {problems[run.spec.key]}"
                             for run in runs if problems[run.spec.key] is not None})
        note_runs(healthy)
        return healthy
    return keep


@pytest.fixture(scope="session")
def session_claims(request: pytest.FixtureRequest) -> frozenset[tuple[str, str]]:
    """``(claim id, architecture)`` of every claim this session runs (after ``-k`` and
    other deselection), so that a fixture starts only the zoos some claim will read."""
    selected = set()
    for item in request.session.items:
        info, name = claim_info(item), arch_name(item)
        if info is not None and name is not None and item.get_closest_marker("skip") is None:
            selected.add((info.id, name))
    return frozenset(selected)


@pytest.fixture(scope="session")
def prefetch_runs(netclaims_settings: Settings, store: Store,
                  session_claims: frozenset[tuple[str, str]],
                  pytestconfig: pytest.Config) -> Callable[..., None]:
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
        if not read:
            return
        specs = [_spec(netclaims_settings, arch, v) for v in variants]
        if netclaims_settings.plan:
            planned(pytestconfig, specs)
        elif netclaims_settings.executor == "process" and not netclaims_settings.ensemble:
            check_long_training(pytestconfig, store, specs)
            store.prefetch(specs, device=netclaims_settings.device, derive=derive)
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
