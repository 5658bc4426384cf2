"""The process pools that train zoos: one per size for the life of the interpreter, workers
that ignore Ctrl-C, and :func:`stop_workers`, which cancels queued runs and stops running ones
(the interrupted runs resume when next asked for)."""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import multiprocessing
import signal
import time

POOLS: dict[int, cf.ProcessPoolExecutor] = {}
"""The worker pools started by this process, by size."""


def worker_pool(workers: int) -> cf.ProcessPoolExecutor:
    """One process pool per size for the life of the interpreter: starting workers (spawn,
    importing torch) costs seconds, so every zoo of a session reuses them. Stopped at exit.
    Workers ignore Ctrl-C: the main process stops them (:func:`stop_workers`), where each
    would otherwise take its next queued run."""
    if workers not in POOLS:
        if not POOLS:
            atexit.register(stop_workers)
        POOLS[workers] = cf.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN))
    return POOLS[workers]


def stop_workers(grace: float = 2.0) -> None:
    """Cancel every queued training of the worker pools and stop the runs they are
    training (terminated, killed after ``grace`` seconds). The store stays consistent: an
    interrupted run resumes from its last saved state when next asked for, and its key's
    lock dies with its worker. The next zoo starts a fresh pool."""
    pools = list(POOLS.values())
    POOLS.clear()
    for pool in pools:
        # ProcessPoolExecutor has no public way to stop running tasks before Python 3.14;
        # its shutdown forgets the processes, so take them first
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        deadline = time.monotonic() + grace
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()


def usable(future: cf.Future) -> bool:
    """Whether a submitted training can still be waited for (not cancelled, its pool not
    stopped)."""
    if future.cancelled():
        return False
    return not (future.done() and isinstance(future.exception(), cf.process.BrokenProcessPool))
