"""What a store holds and what a session trained: a summary of the runs a report read, and
one listing record per entry (``netclaims store ls``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from netclaims.spec import RunSpec
from netclaims.store import CorruptEntryError, Store, read_manifest


def training_summary(store: Store, keys: Iterable[str], since: float) -> dict[str, Any]:
    """Which of the runs ``keys`` were trained from ``since`` (a :func:`time.time`) on: their
    number, and their training seconds summed over the processes that trained them (the
    manifests' ``train_seconds``: optimizer steps only, without evaluations, checkpoints or
    derived measures). ``runs`` counts the keys, ``missing`` those with no complete entry
    now (removed or damaged since they were read)."""
    runs = trained = missing = 0
    seconds = 0.0
    for key in keys:
        runs += 1
        try:
            manifest = read_manifest(store.path / "runs" / key)
        except CorruptEntryError:
            manifest = None
        if manifest is None:
            missing += 1
            continue
        if manifest["started"] >= since:
            trained += 1
            seconds += manifest["train_seconds"]
    return {"runs": runs, "trained": trained, "train_seconds": round(seconds, 3),
            "missing": missing}


def describe_training(summary: Mapping[str, Any]) -> str:
    """One line of a :func:`training_summary`, e.g. ``361 read by the claims, 12 trained in
    this session (48.2 s of training summed over processes)``."""
    text = f"{summary['runs']} read by the claims, {summary['trained']} trained in this session"
    if summary["trained"]:
        text += f" ({summary['train_seconds']:g} s of training summed over processes)"
    if summary["missing"]:
        text += (f"; {summary['missing']} no longer in the store (removed or damaged since "
                 "they were read)")
    return text


def iter_entries(store: Store) -> Iterable[dict[str, Any]]:
    """One record per entry with a manifest (key, label, epochs, size in bytes) for
    listings; a damaged one is listed as such (its label says why), not skipped."""
    for key in store.run_keys():
        entry = store.path / "runs" / key
        size = sum(p.stat().st_size for p in entry.rglob("*") if p.is_file())
        try:
            manifest = read_manifest(entry)
            if manifest is None:
                raise CorruptEntryError("its manifest is gone")
            label, epochs = RunSpec.from_dict(manifest["spec"]).label, manifest["epochs_trained"]
        except (CorruptEntryError, KeyError, TypeError, ValueError) as err:
            label, epochs = f"DAMAGED: {err} (retrained when next read)", "-"
        yield {"key": key, "label": label, "bytes": size, "epochs": epochs}
