"""How much training a selection of claims needs, before any of it starts (``--netclaims-plan``,
``netclaims plan``).

In plan mode the claims run with stand-in runs: ``train_run``, ``train_runs`` and
``prefetch_runs`` note the specs a claim asks for and hand back :class:`PlannedRun` objects,
whose first read (history, weights, derived results) ends the claim with
:class:`NotTrainedError`; nothing trains. The plan then counts, per paper and architecture,
the runs the selection needs and those already in the store, and estimates the training time
of the others on this device from a short calibration: a few optimizer steps and forward
passes of each distinct model shape, on one CPU thread as the trainer runs (or on the GPU).
A claim that chooses a later zoo from the results of an earlier one asks for more than the
plan sees: the counts are a lower bound for such claims.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from netclaims import data as datasets
from netclaims._frozen import thaw
from netclaims.progress import duration
from netclaims.spec import RunSpec, resolved
from netclaims.store import Store
from netclaims.train import evaluated_at, one_cpu_thread, optimizer_for, resolve_device

CALIBRATION_STEPS = 3
"""Timed optimizer steps (and forward passes) per model shape, after one warm-up step."""


class NotTrainedError(Exception):
    """Raised by a :class:`PlannedRun` when a claim reads it: in plan mode nothing trained."""


class PlannedRun:
    """Stands in for a :class:`netclaims.run.Run` in plan mode: it has its ``spec``; reading
    anything else ends the claim (:class:`NotTrainedError`)."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec

    def __getattr__(self, name: str) -> Any:
        raise NotTrainedError(f"plan mode: {self.spec.label} was not trained (read .{name})")


@dataclass
class Plan:
    """The runs a session's claims ask for, by (paper, architecture), first asker first."""

    groups: dict[tuple[str, str], dict[str, RunSpec]] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)

    def add(self, paper: str, arch: str, specs: Iterable[RunSpec]) -> list[PlannedRun]:
        group = self.groups.setdefault((paper, arch), {})
        out = []
        for spec in specs:
            if spec.key not in self.seen:  # a run two families share counts once
                self.seen.add(spec.key)
                group[spec.key] = spec
            out.append(PlannedRun(spec))
        return out


@dataclass
class Row:
    paper: str
    arch: str
    runs: int
    stored: int
    seconds: float

    @property
    def to_train(self) -> int:
        return self.runs - self.stored


def _shape(spec: RunSpec) -> tuple:
    """What a run's cost per step depends on."""
    options = thaw(spec.dataset_options) if spec.dataset_options else {}
    options.pop("train_size", None)
    return (spec.model, spec.model_source, spec.width, spec.depth, spec.batchnorm,
            spec.dropout, spec.dataset, str(sorted(options.items())), spec.batch_size,
            spec.optimizer)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_seconds(spec: RunSpec, data: datasets.Dataset,
                 device: torch.device) -> tuple[float, float]:
    """Seconds per optimizer step of a batch and per forward pass of a batch (no gradient)
    of ``spec``'s model, timed over :data:`CALIBRATION_STEPS` after a warm-up."""
    batch = resolved(spec.batch_size, "batch_size")
    model = spec.build_model(data).to(device)
    x = data.x_train[:batch].to(device)
    y = data.y_train[:batch].to(device)
    opt = optimizer_for(spec, model.parameters())

    def train_step() -> None:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    def forward() -> None:
        with torch.no_grad():
            model(x)

    timings = []
    for step in (train_step, forward):
        step()
        _sync(device)
        started = time.perf_counter()
        for _ in range(CALIBRATION_STEPS):
            step()
        _sync(device)
        timings.append((time.perf_counter() - started) / CALIBRATION_STEPS)
    return timings[0], timings[1]


def run_seconds(spec: RunSpec, data: datasets.Dataset, step: float, forward: float) -> float:
    """Estimated training time of ``spec``: its optimizer steps, and the evaluations of the
    whole training and test sets its history records."""
    batch, epochs = resolved(spec.batch_size, "batch_size"), resolved(spec.epochs, "epochs")
    n_train, n_test = data.x_train.shape[0], data.x_test.shape[0]
    evaluations = 1 + sum(evaluated_at(spec, epoch) for epoch in range(1, epochs + 1))
    return (epochs * math.ceil(n_train / batch) * step
            + evaluations * math.ceil((n_train + n_test) / batch) * forward)


def estimate(plan: Plan, store: Store, *, device: str = "auto",
             data_root: str | None = None) -> tuple[list[Row], float]:
    """One :class:`Row` per (paper, architecture) of ``plan``, and the seconds the
    calibration took."""
    dev = resolve_device(device)
    started = time.perf_counter()
    data_cache: dict[tuple, datasets.Dataset] = {}
    step_cache: dict[tuple, tuple[float, float]] = {}
    rows = []
    with one_cpu_thread():
        for (paper, arch), specs in plan.groups.items():
            stored, seconds = 0, 0.0
            for spec in specs.values():
                if store.has(spec):
                    stored += 1
                    continue
                data_key = (spec.dataset, spec.dataset_options, spec.superclasses)
                if data_key not in data_cache:
                    data_cache[data_key] = spec.load_data(data_root)
                data = data_cache[data_key]
                if _shape(spec) not in step_cache:
                    step_cache[_shape(spec)] = step_seconds(spec, data, dev)
                seconds += run_seconds(spec, data, *step_cache[_shape(spec)])
            rows.append(Row(paper, arch, len(specs), stored, seconds))
    return rows, time.perf_counter() - started


def workers_of(executor: str, device: str) -> int:
    """How many runs train side by side: one per CPU in a process pool, else one."""
    return (os.cpu_count() or 1) if executor == "process" and device == "cpu" else 1


def plan_table(rows: list[Row], workers: int, scale: str, device: str,
               calibration_seconds: float) -> str:
    """The plan as text: one line per paper and architecture, then the totals."""
    from tabulate import tabulate

    lines = [[r.paper, r.arch, r.runs, r.stored, r.to_train, duration(r.seconds)]
             for r in rows]
    total = sum(r.seconds for r in rows)
    lines.append(["all", "", sum(r.runs for r in rows), sum(r.stored for r in rows),
                  sum(r.to_train for r in rows), duration(total)])
    head = (f"plan at {scale} scale on {device}: nothing was trained "
            f"(calibration {calibration_seconds:.1f}s)")
    wall = (f"estimated wall time: {duration(total / workers)} with {workers} "
            f"worker{'s' if workers > 1 else ''} training side by side (training only; "
            "measuring adds to it)")
    return "\n".join([head, tabulate(lines, ["paper", "arch", "runs", "in store", "to train",
                                             "training (summed)"]), wall])


def plan_json(rows: list[Row], workers: int, scale: str, device: str) -> dict[str, Any]:
    total = sum(r.seconds for r in rows)
    return {"scale": scale, "device": device, "workers": workers,
            "rows": [{"paper": r.paper, "arch": r.arch, "runs": r.runs, "in_store": r.stored,
                      "to_train": r.to_train, "seconds": round(r.seconds, 3)} for r in rows],
            "total_seconds": round(total, 3), "wall_seconds": round(total / workers, 3)}
