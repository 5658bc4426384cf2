"""What a person watching a session sees while runs train.

On a terminal, one live line, rewritten in place: the claim that asked, runs done / total,
elapsed time and an estimate of the time left (for a single run, its epochs). In a log (CI,
a redirected output) plain lines instead: one when a zoo or run starts and one when it is
done, so a log says what took the time without thousands of lines. The plugin hands this
object the store's progress events (:meth:`netclaims.store.Store.runs`) and writes through
pytest's terminal reporter with output capture suspended, so the lines show without ``-s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def duration(seconds: float) -> str:
    """``0:42``, ``12:05``, ``1:02:03``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class TrainingProgress:
    """Turns progress events into lines: ``write(line)`` writes a whole line; ``rewrite``
    (None when the output is not a terminal) replaces the current line, and ``end_line``
    ends it. ``context`` names what asked for the training (``SD-7 on mlp``)."""

    def __init__(self, write: Callable[[str], None],
                 rewrite: Callable[[str], None] | None = None,
                 end_line: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.write, self.rewrite, self.end_line, self.clock = write, rewrite, end_line, clock
        self.context = ""
        self._zoo: dict[str, Any] | None = None
        self._run_started = 0.0

    @property
    def live(self) -> bool:
        return self.rewrite is not None

    def _prefix(self) -> str:
        return f"[netclaims] {self.context}: " if self.context else "[netclaims] "

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "zoo":
            self._zoo = {"total": event["total"], "done": 0, "started": self.clock()}
            stored = f" ({event['stored']} already in the store)" if event.get("stored") else ""
            self._show(f"training {event['total']} runs{stored}", final=False)
        elif kind == "trained" and self._zoo is not None:
            self._zoo["done"] = event["done"]
            if self.live:
                self._show(self._zoo_status(self._zoo, f"last: {event['label']}"), final=False)
        elif kind == "zoo-done" and self._zoo is not None:
            elapsed = self.clock() - self._zoo["started"]
            self._show(f"{self._zoo['total']} runs trained in {duration(elapsed)}", final=True)
            self._zoo = None
        elif kind == "epoch":
            self._epoch(event)

    def _zoo_status(self, zoo: dict[str, Any], tail: str) -> str:
        elapsed = self.clock() - zoo["started"]
        left = elapsed / zoo["done"] * (zoo["total"] - zoo["done"]) if zoo["done"] else None
        text = f"{zoo['done']}/{zoo['total']} runs · {duration(elapsed)} elapsed"
        if left is not None:
            text += f" · ~{duration(left)} left"
        return f"{text} · {tail}"

    def _epoch(self, event: dict[str, Any]) -> None:
        epoch, epochs, label = event["epoch"], event["epochs"], event["label"]
        if self._zoo is not None:  # a zoo trained in this process: its line shows the run
            if self.live:
                self._show(self._zoo_status(self._zoo, f"{label}, epoch {epoch}/{epochs}"),
                           final=False)
            return
        if epoch == 1 or not self._run_started:
            self._run_started = self.clock() - event.get("seconds", 0.0)
            if not self.live:
                self.write(f"{self._prefix()}training {label} ({epochs} epochs)")
        elapsed = self.clock() - self._run_started
        if epoch == epochs:
            self._show(f"trained {label} in {elapsed:.1f}s: test_acc={event['test_acc']:.3f}",
                       final=True)
            self._run_started = 0.0
        elif self.live:
            left = elapsed / epoch * (epochs - epoch)
            self._show(f"training {label}, epoch {epoch}/{epochs} · {duration(elapsed)} "
                       f"elapsed · ~{duration(left)} left", final=False)

    def _show(self, text: str, *, final: bool) -> None:
        line = self._prefix() + text
        if self.rewrite is None:
            self.write(line)
            return
        self.rewrite(line)
        if final and self.end_line is not None:
            self.end_line()
