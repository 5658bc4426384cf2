"""The plugin's state in a pytest session: what it keeps on the session (settings, the
preflighted architectures, one health diagnosis per run, the progress display) and on each
claim (its verdict, figures, the runs it used, read and left out), and which claim runs now."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from netclaims.claims import ClaimInfo
from netclaims.health import diagnose
from netclaims.plan import Plan, PlannedRun
from netclaims.preflight import Architecture
from netclaims.progress import TrainingProgress
from netclaims.run import Run
from netclaims.settings import Settings, is_worker
from netclaims.spec import RunSpec
from netclaims.stats import Verdict
from netclaims.store import Store

# on the session (config.stash)
SETTINGS = pytest.StashKey[Settings]()
ARCHITECTURES = pytest.StashKey[dict[str, Architecture]]()
DIAGNOSES = pytest.StashKey[dict[str, str | None]]()
PAPER_MARKERS = pytest.StashKey[set[str]]()
PROGRESS = pytest.StashKey[TrainingProgress]()
PLAN = pytest.StashKey[Plan]()
# on each claim (item.stash)
INFO = pytest.StashKey[ClaimInfo]()
VERDICT = pytest.StashKey[Verdict]()
BASELINE_NOTE = pytest.StashKey[str]()
BASELINE_REASON = pytest.StashKey[str]()
FIGURES = pytest.StashKey[list]()
SETUP_SECONDS = pytest.StashKey[float]()
RUN_KEYS = pytest.StashKey[list]()
UNHEALTHY = pytest.StashKey[dict]()
EXCLUDED = pytest.StashKey[dict]()

CURRENT: list[pytest.Item] = []
"""The claim running now (set before its fixtures), to which trained runs are attributed."""


def note_runs(runs: Sequence[Run], *, read: bool = True) -> None:
    """Remember which store entries the running test used (for its record and for gc), and,
    for those it reads, which are not evidence (:mod:`netclaims.health`)."""
    if CURRENT:
        item = CURRENT[0]
        item.stash.setdefault(RUN_KEYS, []).extend(run.spec.key for run in runs)
        if not read:
            return
        unhealthy = item.stash.setdefault(UNHEALTHY, {})
        for run in runs:
            problem = diagnosis(item.config, run)
            if problem is not None:
                unhealthy[run.spec.key] = f"{run.spec.label}: {problem}"


def diagnosis(config: pytest.Config, run: Run) -> str | None:
    """Why ``run`` is not evidence, or None (:func:`netclaims.health.diagnose`, once per run
    and session)."""
    diagnoses = config.stash.setdefault(DIAGNOSES, {})
    if run.spec.key not in diagnoses:
        diagnoses[run.spec.key] = diagnose(run)
    return diagnoses[run.spec.key]


def claim_info(item: pytest.Item) -> ClaimInfo | None:
    marker = item.get_closest_marker("netclaims_claim")
    return marker.args[0] if marker is not None else None


def arch_name(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return str(callspec.params["arch"]) if callspec is not None and "arch" in callspec.params \
        else None


def progress_display(config: pytest.Config) -> TrainingProgress:
    """The session's progress display (one per session), writing through the terminal
    reporter with capture suspended, so that it shows without ``-s``; silent in xdist
    workers (their output is not shown live)."""
    if PROGRESS not in config.stash:
        reporter: Any = None if is_worker(config) else \
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
    info, arch = _running_claim()
    progress.context = f"{info.id} on {arch}" if info is not None and arch else ""
    return progress


def _running_claim() -> tuple[ClaimInfo | None, str | None]:
    """The claim running now and its architecture (None outside a claim)."""
    item = CURRENT[0] if CURRENT else None
    if item is None:
        return None, None
    return claim_info(item), arch_name(item)


def planned(config: pytest.Config, specs: Sequence[RunSpec]) -> list[PlannedRun]:
    """Plan mode: note the runs the running claim asks for, by its paper and architecture,
    and hand back stand-ins (:mod:`netclaims.plan`)."""
    info, arch = _running_claim()
    return config.stash.setdefault(PLAN, Plan()).add(
        info.paper if info is not None else "-", arch or "-", specs)


def check_long_training(config: pytest.Config, store: Store, specs: Sequence[RunSpec]) -> None:
    """Paper scale trains for hours: without ``--netclaims-allow-long`` the session stops
    before the first run it would train (runs already in the store are read)."""
    settings = config.stash[SETTINGS]
    if settings.scale != "paper" or settings.allow_long:
        return
    missing = [spec for spec in specs if not store.has(spec)]
    if missing:
        pytest.exit(f"netclaims: paper scale would now train {len(missing)} run(s) "
                    f"({missing[0].label}{', …' if len(missing) > 1 else ''}), and its claims "
                    "train for hours; nothing was trained. See what a selection needs with "
                    "--netclaims-plan, then run it with --netclaims-allow-long.",
                    returncode=pytest.ExitCode.USAGE_ERROR)
