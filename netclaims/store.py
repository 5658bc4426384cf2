"""Content-addressed store of trained runs, keyed by :attr:`RunSpec.key`.

Layout under the store's root::

    runs/<key>/manifest.json        spec, provenance, sha256 of every file (written last)
    runs/<key>/model.safetensors    final weights
    runs/<key>/history.json         history of the evaluated epochs
    runs/<key>/checkpoints/*.safetensors
    work/<key>/                     a run being trained (resumable state), renamed into runs/
    derived/<key>/*.safetensors     results computed from a run (:meth:`Run.derived`)
    locks/<key>.lock                one trainer per key across processes
    locks/store.lock, locks/users/  which processes use the store (:mod:`netclaims._usage`)

A run is published by renaming its finished work directory into ``runs/`` after its manifest
is written, so a half-written entry is never read as complete. Reading verifies every file's
checksum; a damaged entry (a file or the manifest itself) is removed and retrained. The
resumable state and derived results carry their own checksums (:func:`netclaims._io.
save_checked`). Weights are safetensors (no pickle).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from filelock import FileLock

import netclaims
from netclaims import _usage
from netclaims._io import write_json
from netclaims.ensemble import groups, train_ensemble
from netclaims.numerics import numerics_fingerprint
from netclaims.pool import POOLS, stop_workers, usable, worker_pool
from netclaims.run import Run
from netclaims.spec import RunSpec, resolved
from netclaims.train import (
    STATE_EVERY_SECONDS,
    Progress,
    TrainState,
    one_cpu_thread,
    train,
)

EXECUTORS = ("inline", "process", "ray")


def default_path() -> Path:
    """``$NETCLAIMS_STORE``, else ``$XDG_CACHE_HOME/netclaims/store``
    (``~/.cache/netclaims/store``)."""
    if os.environ.get("NETCLAIMS_STORE"):
        return Path(os.environ["NETCLAIMS_STORE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "netclaims" / "store"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class CorruptEntryError(RuntimeError):
    """A store entry whose files do not match its manifest."""


ENTRY_FILES = ("model.safetensors", "history.json")
"""Files every complete entry has (its manifest lists them, with checkpoints if any)."""


def read_manifest(entry: Path) -> dict[str, Any] | None:
    """The manifest of a store entry, or None when there is none; raises
    :class:`CorruptEntryError` when it is not a readable manifest (garbled bytes, not a JSON
    object, no checksum for a file every entry has)."""
    path = entry / "manifest.json"
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptEntryError(f"the manifest is not JSON ({err})") from err
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not (isinstance(files, dict) and all(isinstance(k, str) and isinstance(v, str)
                                            for k, v in files.items())):
        raise CorruptEntryError("the manifest has no table of file checksums")
    missing = [name for name in ENTRY_FILES if name not in files]
    if missing or not isinstance(manifest.get("key"), str) or \
            not isinstance(manifest.get("spec"), dict):
        raise CorruptEntryError(f"the manifest lacks {missing or 'its key or spec'}")
    return manifest


class Store:
    """Trained runs on disk, trained on demand and never twice."""

    def __init__(self, path: str | os.PathLike | None = None, *,
                 data_root: str | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.data_root = data_root
        self._checked: dict[str, tuple[dict[str, tuple[int, int]], dict[str, Any]]] = {}
        """Entries whose checksums matched: their files' (size, mtime) then, and manifest."""
        self._pending: dict[str, cf.Future] = {}
        """Runs submitted to the process pool and not yet waited for, by key."""
        for sub in ("runs", "work", "locks", "derived"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        _usage.hold(self.path)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def entry(self, spec: RunSpec) -> Path:
        return self.path / "runs" / spec.key

    def _verified(self, spec: RunSpec) -> Run | None:
        """The complete entry for ``spec`` if it exists and its checksums match; a damaged
        one is removed (and reported) so that it is retrained."""
        entry = self.entry(spec)
        if not (entry / "manifest.json").exists():
            self._checked.pop(spec.key, None)
            return None
        checked = self._checked.get(spec.key)
        if checked is not None and checked[0] == _file_stats(entry, checked[1]):
            return Run(entry, spec, checked[1], self.data_root)
        try:
            manifest = read_manifest(entry)
            if manifest is None:  # removed meanwhile
                return None
            for name, digest in manifest["files"].items():
                if not (entry / name).exists() or _sha256(entry / name) != digest:
                    raise CorruptEntryError(f"{name} does not match its checksum")
            if manifest["key"] != spec.key:
                raise CorruptEntryError("the manifest belongs to another spec")
        except (CorruptEntryError, OSError) as err:
            warnings.warn(f"store entry {entry} is damaged ({err}); it will be retrained",
                          stacklevel=3)
            shutil.rmtree(entry, ignore_errors=True)
            self._checked.pop(spec.key, None)
            return None
        stats = _file_stats(entry, manifest)
        settled = time.time_ns() - RACY_NS
        if stats is not None and all(mtime < settled for _, mtime in stats.values()):
            self._checked[spec.key] = (stats, manifest)
        return Run(entry, spec, manifest, self.data_root)

    def has(self, spec: RunSpec) -> bool:
        """Whether a complete, verified entry exists for ``spec``."""
        return self._verified(spec) is not None

    def run(self, spec: RunSpec, *, device: str = "auto", progress: Progress | None = None,
            state_every: float = STATE_EVERY_SECONDS) -> Run:
        """The finished run for ``spec``: read from the store, or trained (resuming an
        interrupted attempt) while holding the key's lock, then published atomically.
        ``state_every``: seconds of training between saves of the resumable state."""
        found = self._verified(spec)
        if found is not None:
            return found
        with FileLock(str(self.path / "locks" / f"{spec.key}.lock")):
            found = self._verified(spec)  # another process may have trained it meanwhile
            if found is not None:
                return found
            work = self.path / "work" / spec.key
            started = time.time()
            state = train(spec, work, device=device, data_root=self.data_root,
                          progress=progress, state_every=state_every)
            self._publish(spec, work, state, started, device)
        return self._fresh(spec)

    def _publish(self, spec: RunSpec, work: Path, state: TrainState, started: float,
                 device: str, **notes: Any) -> None:
        """Move a trained run from ``work`` into the store under its manifest (the caller
        holds the key's lock)."""
        write_json(work / "history.json", state.history)
        for leftover in [*work.glob("state*"), *work.glob(".*")]:
            leftover.unlink()
        files = {str(p.relative_to(work)): _sha256(p)
                 for p in [*sorted(work.rglob("*.safetensors")), work / "history.json"]}
        write_json(work / "manifest.json", {
            "key": spec.key, "spec": spec.to_dict(), "files": files,
            "stopped_early": state.stopped, "epochs_trained": state.epoch,
            "provenance": provenance(device), "train_seconds": state.seconds,
            "finished": time.time(), "started": started, **notes})
        entry = self.entry(spec)
        shutil.rmtree(entry, ignore_errors=True)
        os.replace(work, entry)

    def _fresh(self, spec: RunSpec) -> Run:
        run = self._verified(spec)
        if run is None:
            raise RuntimeError(f"{spec.label} is missing from the store after training")
        run.fresh = True
        return run

    def train_together(self, specs: Sequence[RunSpec], *, device: str = "auto",
                       progress: Progress | None = None) -> list[Run]:
        """The runs of ``specs`` (members of one ensemble: :func:`netclaims.ensemble.groups`),
        those not in the store trained together as one batched model while holding every
        member's lock, each published as an ordinary run (its manifest says
        ``trained_with``: how many members trained together)."""
        with contextlib.ExitStack() as held:
            for spec in sorted(specs, key=lambda s: s.key):  # one order: no deadlock
                held.enter_context(FileLock(str(self.path / "locks" / f"{spec.key}.lock")))
            todo = [spec for spec in specs if self._verified(spec) is None]
            works = [self.path / "work" / spec.key for spec in todo]
            for work in works:  # an interrupted attempt's state is not an ensemble's
                shutil.rmtree(work, ignore_errors=True)
            started = time.time()
            if todo:
                states = train_ensemble(todo, works, device=device, data_root=self.data_root,
                                        progress=progress)
                for spec, work, state in zip(todo, works, states, strict=True):
                    self._publish(spec, work, state, started, device,
                                  trained_with=len(todo))
        return [self._fresh(spec) if spec in todo else cast(Run, self._verified(spec))
                for spec in specs]

    def runs(self, specs: Sequence[RunSpec], *, executor: str = "inline",
             workers: int | None = None, device: str = "auto",
             progress: Progress | None = None,
             derive: Callable[[Run], Any] | None = None,
             ensemble: bool = False) -> list[Run]:
        """Every run of ``specs`` (in order), training the missing ones in-process
        (``inline``), in a process pool (``process``) or on a Ray cluster (``ray``: the
        cluster at ``RAY_ADDRESS``, else a local one). Workers write to this store. With
        ``ensemble``, missing runs that differ only in their seed train together in-process
        as one batched model (:mod:`netclaims.ensemble`; the others one by one), whatever
        the executor.

        ``derive``, a picklable function of a run that caches its results with
        :meth:`Run.derived` (a module-level function or a ``functools.partial`` of one), is
        called on each run this call trains, right after training and in the same process
        pool worker, so that measuring one run overlaps with training the next. Its return
        value is dropped: the caller's own call then reads the cache. A derive that fails in a
        worker is left for that call to raise. The Ray executor does not derive (its workers
        may not import the caller's module).

        ``progress`` receives ``{"event": "zoo", "total", "stored"}`` when training starts,
        ``{"event": "trained", "done", "total", "label"}`` as each run is done,
        ``{"event": "zoo-done", "total"}`` at the end, and the epochs of runs trained
        in-process (:func:`netclaims.train.train`)."""
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
        unique = list(dict.fromkeys(specs))
        found = {s.key: self._verified(s) for s in unique}
        missing = [s for s in unique if found[s.key] is None]
        report = progress or (lambda _event: None)
        total = len(missing)
        if missing:
            report({"event": "zoo", "total": total, "stored": len(unique) - total})
            if ensemble:
                self._ensembles(missing, device, report, derive, progress)
            elif executor == "inline" or (total == 1 and missing[0].key not in self._pending):
                for done, spec in enumerate(missing, start=1):
                    run = self.run(spec, device=device, progress=progress)
                    if derive is not None:
                        derive(run)
                    report({"event": "trained", "done": done, "total": total,
                            "label": spec.label})
            elif executor == "process":
                self._process_pool(missing, workers, device, report, derive)
            else:
                self._ray(missing, workers, device, report)
            report({"event": "zoo-done", "total": total})
        found.update({s.key: self._verified(s) for s in missing})
        absent = [s.label for s in unique if found[s.key] is None]
        if absent:
            raise RuntimeError(f"runs missing from the store after training: {absent}")
        return [cast(Run, found[s.key]) for s in specs]

    def _ensembles(self, missing: list[RunSpec], device: str, report: Progress,
                   derive: Callable[[Run], Any] | None, progress: Progress | None) -> None:
        together, alone = groups(missing)
        done = 0
        for batch in [*together, *([s] for s in alone)]:
            runs = self.train_together(batch, device=device, progress=progress) \
                if len(batch) > 1 else [self.run(batch[0], device=device, progress=progress)]
            for run in runs:
                if derive is not None:
                    derive(run)
                done += 1
                report({"event": "trained", "done": done, "total": len(missing),
                        "label": run.spec.label})

    def prefetch(self, specs: Sequence[RunSpec], *, workers: int | None = None,
                 device: str = "auto", derive: Callable[[Run], Any] | None = None) -> None:
        """Start training the missing runs of ``specs`` in the process pool and return at
        once: a later :meth:`runs` of them waits for these trainings instead of starting its
        own, so a zoo needed later keeps the pool busy while the current one finishes."""
        missing = [s for s in dict.fromkeys(specs) if self._verified(s) is None]
        if missing:
            self._submit(missing, workers, device, derive)

    def _submit(self, specs: Sequence[RunSpec], workers: int | None, device: str,
                derive: Callable[[Run], Any] | None) -> dict[cf.Future, RunSpec]:
        """Each spec's training in the pool, submitted now (largest first, so a zoo does
        not end with one worker training a large net while the others wait) or earlier."""
        pool = worker_pool(workers or os.cpu_count() or 1)
        futures = {}
        for spec in sorted(specs, key=_training_size, reverse=True):
            future = self._pending.get(spec.key)
            if future is None or not usable(future):
                future = pool.submit(_train_in_worker, str(self.path), spec.to_dict(), device,
                                     self.data_root, derive)
                self._pending[spec.key] = future
            futures[future] = spec
        return futures

    def _process_pool(self, specs: Sequence[RunSpec], workers: int | None, device: str,
                      report: Callable[[dict], None],
                      derive: Callable[[Run], Any] | None) -> None:
        try:
            futures = self._submit(specs, workers, device, derive)
            for done, future in enumerate(cf.as_completed(futures), start=1):
                self._pending.pop(futures[future].key, None)
                future.result()
                report({"event": "trained", "done": done, "total": len(specs),
                        "label": futures[future].label})
        except cf.process.BrokenProcessPool:
            POOLS.clear()  # a dead worker breaks the pool: start afresh next time
            self._pending.clear()
            raise
        except KeyboardInterrupt:
            stop_workers()  # Ctrl-C: no run goes on training behind the user's back
            self._pending.clear()
            raise

    def _ray(self, specs: Sequence[RunSpec], workers: int | None, device: str,
             report: Callable[[dict], None]) -> None:
        try:
            import ray
        except ImportError as err:
            raise RuntimeError("the ray executor needs Ray: pip install 'netclaims[ray]'") \
                from err
        if not ray.is_initialized():
            address = os.environ.get("RAY_ADDRESS")
            if address:
                ray.init(address=address)
            else:
                ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False,
                         log_to_driver=False)
        remote = ray.remote(num_cpus=1)(_train_in_worker)
        labels = {s.key: s.label for s in specs}
        pending = [remote.remote(str(self.path), s.to_dict(), device, self.data_root)
                   for s in specs]
        done = 0
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            key = ray.get(finished[0])
            done += 1
            report({"event": "trained", "done": done, "total": len(specs),
                    "label": labels[key]})

    def run_keys(self) -> list[str]:
        """Keys of the complete entries (with a manifest)."""
        return sorted(p.parent.name for p in (self.path / "runs").glob("*/manifest.json"))


def _training_size(spec: RunSpec) -> float:
    """A rough proxy of a run's cost, to submit the longest runs first."""
    samples = dict(spec.dataset_options).get("train_size", 1)
    return resolved(spec.epochs, "epochs") * spec.width * spec.depth * samples


RACY_NS = 2_000_000_000
"""Files modified this recently when their checksums matched are hashed again next time:
file times are coarse, so a change within the same tick could keep size and time."""


def _file_stats(entry: Path, manifest: Mapping[str, Any]) -> dict[str, tuple[int, int]] | None:
    """Size and modification time of the entry's manifest and of each file it lists (None
    when one is missing): an entry whose files keep them since their checksums matched is
    not hashed again (git's index does the same, and treats recently written files as racy
    as well)."""
    try:
        return {name: (st.st_size, st.st_mtime_ns)
                for name in [*manifest["files"], "manifest.json"]
                for st in [(entry / name).stat()]}
    except FileNotFoundError:
        return None


def _train_in_worker(path: str, spec: dict, device: str, data_root: str | None,
                     derive: Callable[[Run], Any] | None = None) -> str:
    run_spec = RunSpec.from_dict(spec)
    run = Store(path, data_root=data_root).run(run_spec, device=device)
    if derive is not None:
        # one thread per worker, as in training
        with one_cpu_thread(), contextlib.suppress(Exception):  # the caller's call raises it
            derive(run)
    return run_spec.key


def provenance(device: str = "auto") -> dict[str, Any]:
    """Versions, device and host facts recorded with every run and report."""
    cuda = torch.cuda.is_available()
    where = ("cuda:" + torch.cuda.get_device_name(0)) if cuda and device != "cpu" else "cpu"
    return {
        "netclaims": netclaims.__version__, "python": sys.version.split()[0],
        "torch": torch.__version__, "cuda": torch.version.cuda if cuda else None,
        "device": where, "platform": platform.platform(), "threads": torch.get_num_threads(),
        "numerics": numerics_fingerprint(where),
    }
