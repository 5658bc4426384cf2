"""Cleaning a run store (``netclaims store gc``): what may go, and only when nobody uses it.

Removed: work folders of interrupted trainings, entries without a readable manifest, derived
results whose run is gone or that an older netclaims computed, lock files, and (when given
the reports to keep) every entry none of them read. Nothing is removed while another process
uses the store (:func:`netclaims._usage.alone`), so a running session never loses an entry it
reads or a run it trains.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from filelock import FileLock, Timeout
from safetensors import SafetensorError, safe_open

from netclaims import _usage
from netclaims.run import CODE_KEY, code_digest
from netclaims.store import Store, read_manifest


def kept_runs(reports: Iterable[dict]) -> set[str]:
    """The run keys the JSON ``reports`` read (their top-level ``runs`` lists)."""
    keep: set[str] = set()
    for report in reports:
        runs = report.get("runs") if isinstance(report, dict) else None
        if not isinstance(runs, list) or not all(isinstance(k, str) for k in runs):
            raise ValueError("a report to keep has no 'runs' list of run keys (is it a "
                             "netclaims report.json?); nothing was removed")
        keep.update(runs)
    return keep


def collect_garbage(store: Store, keep: set[str] | None = None, *,
                    dry_run: bool = False) -> dict[Path, int]:
    """Remove (or with ``dry_run`` only list) what the store no longer needs, returning each
    folder or file with its size in bytes; ``keep``: the run keys to keep, every other entry
    going too (None: keep every complete entry).
    Raises :class:`netclaims._usage.StoreBusyError` while another process uses the store."""
    root = store.path
    with _usage.alone(root):
        doomed = [p for p in sorted((root / "work").iterdir()) if p.is_dir()]
        for entry in sorted((root / "runs").iterdir()):
            if not entry.is_dir():
                continue
            if read_manifest(entry) is None or (keep is not None and entry.name not in keep):
                doomed.append(entry)
        gone = {p.name for p in doomed if p.parent.name == "runs"}
        for folder in sorted((root / "derived").glob("*")):
            if folder.name in gone or not (root / "runs" / folder.name).is_dir():
                doomed.append(folder)
            else:
                doomed += [f for f in sorted(folder.glob("*.safetensors")) if _stale(f)]
        sizes = {path: _bytes(path) for path in doomed}
        if not dry_run:
            for path in doomed:
                _remove(root, path)
            for lock in (root / "locks").glob("*.lock"):
                if lock.name != "store.lock":
                    lock.unlink(missing_ok=True)  # nobody waits on it: the store is ours
            _usage.forget_departed(root)
        return sizes


def _stale(path: Path) -> bool:
    """Whether a derived result was computed by other netclaims code (never read again)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get(CODE_KEY) != code_digest()
    except (OSError, SafetensorError):
        return True


def _remove(root: Path, path: Path) -> None:
    """Remove ``path``, under its run's lock when it is a run's folder (a trainer of this
    process holding it is left alone)."""
    if path.is_file():
        path.unlink(missing_ok=True)
        return
    try:
        with FileLock(str(root / "locks" / f"{path.name}.lock"), timeout=0):
            shutil.rmtree(path, ignore_errors=True)
    except Timeout:
        pass


def _bytes(path: Path) -> int:
    """Bytes in a file, or in the files of a folder."""
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files)
