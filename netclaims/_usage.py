"""Which processes are using a store, so that cleaning it never removes what one reads.

Every process that opens a :class:`~netclaims.store.Store` holds a shared ``flock`` on the
store's ``locks/store.lock`` for the rest of its life (once per process and store: pytest
sessions, their pool workers, notebooks). :func:`alone` takes that lock exclusively, which
succeeds only when no other process holds it, and refuses otherwise, naming who does. The
operating system drops a process's lock when it ends, however it ends, so a killed session
never leaves the store locked. Where ``fcntl`` is missing (Windows) nothing is held and
:func:`alone` says that it cannot tell.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

fcntl: Any
try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

_HELD: dict[str, int] = {}
"""File descriptor of each store lock this process holds, by the store's resolved root."""


class StoreBusyError(RuntimeError):
    """The store is in use by another process."""


def _lock_file(root: Path) -> Path:
    return root / "locks" / "store.lock"


def _users(root: Path) -> Path:
    return root / "locks" / "users"


def hold(root: Path) -> None:
    """Mark this process as a user of the store at ``root`` until it exits (waits while the
    store is being cleaned)."""
    key = str(root.resolve())
    if fcntl is None or key in _HELD:
        return
    _users(root).mkdir(parents=True, exist_ok=True)
    fd = os.open(_lock_file(root), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_SH)
    _HELD[key] = fd
    (_users(root) / str(os.getpid())).touch()


def other_users(root: Path) -> list[int]:
    """Process ids that announced themselves as users of the store and are alive."""
    pids = []
    for path in _users(root).glob("*"):
        if path.name.isdigit() and int(path.name) != os.getpid() and _alive(int(path.name)):
            pids.append(int(path.name))
    return sorted(pids)


def forget_departed(root: Path) -> None:
    """Remove the announcements of processes that have ended."""
    for path in _users(root).glob("*"):
        if not (path.name.isdigit() and _alive(int(path.name))):
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def alone(root: Path) -> Iterator[None]:
    """Hold the store at ``root`` exclusively inside the block; :class:`StoreBusyError` when
    another process uses it."""
    if fcntl is None:  # pragma: no cover - Windows
        raise StoreBusyError("this platform has no fcntl, so whether another process uses the "
                        "store cannot be told; stop every netclaims session, then remove "
                        "folders by hand")
    hold(root)
    fd = _HELD[str(root.resolve())]
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        # a failed conversion may drop the shared lock (flock(2)): take it again
        fcntl.flock(fd, fcntl.LOCK_SH)
        pids = other_users(root)
        who = f"processes {', '.join(map(str, pids))}" if pids else "another process"
        raise StoreBusyError(f"the store {root} is in use by {who} (a pytest session, its "
                        "workers, or a Python session holding a Store); nothing was removed: "
                        "run this again when they have ended") from None
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_SH)
