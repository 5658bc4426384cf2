"""The plugin's options: declared once (each also an ini setting), resolved and checked
into one :class:`Settings` per session, so that a bad value stops the session before
anything trains."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from netclaims import data as datasets
from netclaims.claims import SCALES
from netclaims.report import (
    Baseline,
    load_baseline,
    load_report,
)
from netclaims.spec import RunSpec


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
    seeds_given: bool = False
    plan: bool = False
    allow_long: bool = False
    ensemble: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)


IniType = Literal["string", "linelist", "bool"]


OPTIONS: list[tuple[str, IniType, dict[str, Any]]] = [
    ("arch", "linelist", {"action": "append", "metavar": "SPEC",
                          "help": "architecture to run the claims on: a registered model name "
                                  "or module:callable (repeatable; default: mlp, convnet, "
                                  "resnet18)"}),
    ("scale", "string", {"choices": tuple(SCALES), "help": "protocol scale (default: smoke)"}),
    ("seeds", "string", {"type": int, "metavar": "N",
                         "help": "training seeds per condition, for every suite (default: "
                                 "3 at smoke scale, or what a suite asks for; 5 at paper)"}),
    ("device", "string", {"choices": ("auto", "cpu", "cuda"),
                          "help": "training device (default: cpu at smoke, auto at paper)"}),
    ("store", "string", {"metavar": "DIR", "help": "run store (default: $NETCLAIMS_STORE or "
                                                   "~/.cache/netclaims/store)"}),
    ("executor", "string", {"choices": ("auto", "inline", "process", "ray"),
                            "help": "how zoos are trained (default auto: a process pool, one "
                                    "worker per CPU, when training on the CPU of a machine "
                                    "with several and not under xdist; else inline)"}),
    ("ensemble", "string", {"choices": ("auto", "on", "off"),
                            "help": "train the seeds of a condition together as one batched "
                                    "model (default auto: on a GPU, which one small net "
                                    "leaves idle; off on the CPU, where the process pool "
                                    "fills the cores)"}),
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
    ("override", "linelist", {"action": "append", "metavar": "FIELD=VALUE",
                              "help": "force a run-spec field in every run (repeatable), e.g. "
                                      "epochs=2: a quick check of a scale's code path, whose "
                                      "results are not evidence"}),
    ("plan", "bool", {"action": "store_true",
                      "help": "train nothing: print how many runs the selected claims need, "
                              "how many are in the store and the estimated training time "
                              "on this device"}),
    ("allow-long", "bool", {"action": "store_true",
                            "help": "let paper scale train (hours): without it a paper-scale "
                                    "session stops before its first training, so that a long "
                                    "run never starts by surprise (see --netclaims-plan)"}),
]


def option_value(config: pytest.Config, name: str) -> Any:
    key = f"netclaims_{name.replace('-', '_')}"
    value = config.getoption(key)
    if value is None or value == []:
        value = config.getini(key)
    return value if value not in ([], "") else None


def resolve_settings(config: pytest.Config) -> Settings:
    scale = option_value(config, "scale") or "smoke"
    if scale not in SCALES:
        raise pytest.UsageError(f"netclaims_scale must be one of {list(SCALES)}, got {scale!r}")
    minimum = SCALES[scale]["min_seeds"]
    raw = option_value(config, "seeds")
    try:
        seeds = minimum if raw is None else int(raw)
    except ValueError:
        raise pytest.UsageError(f"netclaims_seeds must be a whole number of seeds, got "
                                f"{raw!r}") from None
    if seeds < minimum:
        raise pytest.UsageError(f"{scale} scale needs at least {minimum} seeds "
                                f"(docs/statistics.md), got --netclaims-seeds {seeds}")
    baseline_path = option_value(config, "baseline")
    baseline = _load_file(baseline_path, "baseline", load_baseline)
    task = _task(config, scale)
    if baseline is not None and baseline.task != task:
        raise pytest.UsageError(f"--netclaims-baseline {baseline_path} was recorded on task "
                                f"{baseline.task!r}; this session trains on {task!r}: compare "
                                "with a baseline recorded on the same task")
    compare = _load_file(option_value(config, "compare"), "compare", load_report)
    save = option_value(config, "save-baseline")
    overrides = parse_overrides(option_value(config, "override") or [])
    if save and overrides:
        raise pytest.UsageError("--netclaims-save-baseline records evidence; runs changed by "
                                "--netclaims-override are not")
    if save and Path(save).is_dir():
        raise pytest.UsageError(f"--netclaims-save-baseline {save} is a folder; name the "
                                "baseline file to write")
    root = Path(config.rootpath)
    device = option_value(config, "device") or SCALES[scale]["device"]
    executor = option_value(config, "executor") or "auto"
    if executor == "auto":
        parallel = device == "cpu" and (os.cpu_count() or 1) > 1 and not is_worker(config)
        executor = "process" if parallel else "inline"
    return Settings(
        scale=scale, seeds=list(range(seeds)), seeds_given=raw is not None, device=device,
        store_path=option_value(config, "store"), executor=executor,
        data_root=option_value(config, "data-root"), archs=option_value(config, "arch"),
        report_dir=root / (option_value(config, "report") or "netclaims-report"),
        baseline=baseline, save_baseline=Path(save) if save else None, compare=compare,
        inconclusive=option_value(config, "inconclusive") or "fail",
        dataset=task, plan=bool(option_value(config, "plan")),
        allow_long=bool(option_value(config, "allow-long")),
        ensemble=_ensemble(option_value(config, "ensemble") or "auto", device),
        overrides=overrides)


def _ensemble(choice: str, device: str) -> bool:
    """Whether zoos train as ensembles: ``on``, ``off``, or (``auto``) on a CUDA device."""
    if choice not in ("auto", "on", "off"):
        raise pytest.UsageError(f"netclaims_ensemble must be auto, on or off, got {choice!r}")
    if choice != "auto":
        return choice == "on"
    import torch

    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


OVERRIDE_FORBIDDEN = ("model", "seed", "model_source")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["epochs=2", "width=0.25"]`` -> ``{"epochs": 2, "width": 0.25}`` (values read as
    JSON where they parse, else as text), each a field of :class:`RunSpec`."""
    fields = {f.name for f in dataclasses.fields(RunSpec)} - set(OVERRIDE_FORBIDDEN)
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or name not in fields:
            raise pytest.UsageError(f"--netclaims-override {item!r}: expected FIELD=VALUE with "
                                    f"FIELD one of {sorted(fields)}")
        try:
            out[name] = json.loads(text)
        except json.JSONDecodeError:
            out[name] = text
    return out


def _load_file(path: str | None, option: str, load: Callable[[str], Any]) -> Any:
    """``load(path)`` of a file option (None when not given); an unreadable or malformed
    file is a usage error naming the option."""
    if not path:
        return None
    try:
        return load(path)
    except (OSError, ValueError) as err:
        raise pytest.UsageError(f"--netclaims-{option} {path}: {err}") from err


def _task(config: pytest.Config, scale: str) -> str:
    task = option_value(config, "task")
    if task is None:
        with_root = option_value(config, "data-root") and "dataset_with_root" in SCALES[scale]
        return SCALES[scale]["dataset_with_root" if with_root else "dataset"]
    if task not in datasets.available():
        raise pytest.UsageError(f"--netclaims-task {task!r} is not a dataset; choose one of "
                                f"{datasets.available()}")
    return task


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def check_writable(folder: Path, option: str) -> None:
    """Raise a usage error (exit code 4, one line) unless files can be written in
    ``folder`` (created if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".netclaims-probe-"):
            pass
    except OSError as err:
        raise pytest.UsageError(f"{option}: cannot write into {folder} "
                                f"({err.strerror or err})") from None


def task_data(settings: Settings) -> datasets.Dataset:
    """The session's task: ``--netclaims-task``, or the scale's default (MNIST-1D; CIFAR-10
    from ``--netclaims-data-root`` at paper scale)."""
    options: dict[str, Any] = {}
    if settings.data_root and "root" in datasets.options_of(settings.dataset):
        options["root"] = settings.data_root
    return datasets.load(settings.dataset, **options)
