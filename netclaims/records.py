"""What a claim's outcome leaves behind: its record (verdict, numbers, reasons, source,
figures, runs), carried from xdist workers in the report's ``user_properties``; and, on
the controller, the :class:`Collector` that gathers records, writes the reports and prints
the summary."""

from __future__ import annotations

import functools
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from netclaims import models
from netclaims._io import write_text
from netclaims.claims import DEFAULT_ARCHS, ClaimInfo
from netclaims.compare import compare_reports, compare_table
from netclaims.inventory import describe_training, training_summary
from netclaims.numerics import describe, fingerprint_differences
from netclaims.plan import Plan, estimate, plan_json, plan_table, workers_of
from netclaims.pool import stop_workers
from netclaims.render import terminal_matrix, write_reports
from netclaims.report import (
    build_report,
    make_baseline,
    terminal_table,
)
from netclaims.session import (
    BASELINE_NOTE,
    BASELINE_REASON,
    EXCLUDED,
    FIGURES,
    INFO,
    PLAN,
    RUN_KEYS,
    SETTINGS,
    VERDICT,
)
from netclaims.settings import Settings
from netclaims.stats import Outcome, Verdict
from netclaims.store import Store, provenance
from netclaims.train import resolve_device

RECORD = "netclaims_record"


def not_evidence(info: ClaimInfo, problems: list[str]) -> Verdict:
    """INCONCLUSIVE: some runs the claim read did not train (:mod:`netclaims.health`)."""
    listed = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more"
                                        if len(problems) > 3 else "")
    return Verdict(claim_id=info.id, finding=info.finding, statistic="-", estimate=math.nan,
                   ci_low=math.nan, ci_high=math.nan, n=0, p_value=None,
                   rule=info.rule.describe(), outcome=Outcome.INCONCLUSIVE,
                   reason=f"{len(problems)} run(s) it reads are not evidence: {listed}",
                   details={"unhealthy_runs": problems})


def make_record(item: pytest.Item, verdict: str, message: str, seconds: float = 0.0) -> dict:
    info: ClaimInfo = item.stash[INFO]
    settings = item.config.stash[SETTINGS]
    callspec = getattr(item, "callspec", None)
    arch = str(callspec.params.get("arch", "-")) if callspec is not None else "-"
    run_keys: list[str] = item.stash.get(RUN_KEYS, [])
    out: dict[str, Any] = {"id": info.id, "paper": info.paper,
                           "paper_title": info.paper_title, "finding": info.finding,
                           "summary": info.summary,
                           "arch": arch, "scale": settings.scale, "verdict": verdict,
                           "message": message, "seconds": round(seconds, 3),
                           "nodeid": item.nodeid, "figures": item.stash.get(FIGURES, []),
                           "runs": sorted(set(run_keys)),
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
                self.records.append(json.loads(str(value)))

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
                "scaled_training": {name: fields for name in models.available()
                                    if (fields := models.scale_fields(name, settings.scale))},
                "command": _command_line(),
                **({"overrides": settings.overrides} if settings.overrides else {}),
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
            differences = baseline_differences(settings)
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


def baseline_differences(settings: Settings) -> list[str]:
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


class PlanSummary:
    """Plan mode's report (``--netclaims-plan``): after the claims ran with stand-in runs,
    the runs they need per paper and architecture, those in the store and the estimated
    training time on this device, in the terminal and in ``plan.json``."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        settings = self.config.stash[SETTINGS]
        store = Store(settings.store_path, data_root=settings.data_root)
        rows, seconds = estimate(self.config.stash.get(PLAN, Plan()), store,
                                 device=settings.device, data_root=settings.data_root)
        device = resolve_device(settings.device).type
        workers = workers_of(settings.executor, device)
        terminalreporter.write_sep("=", "netclaims plan")
        terminalreporter.write_line(plan_table(rows, workers, settings.scale, device, seconds))
        path = settings.report_dir / "plan.json"
        try:
            write_text(path, json.dumps(plan_json(rows, workers, settings.scale, device),
                                        indent=2) + "\n")
            terminalreporter.write_line(f"plan: {path}")
        except OSError as err:
            terminalreporter.write_line(f"the plan could not be written ({err})")
