"""Which verdicts and estimates moved between two reports (two commits, two machines, two
architectures), in the spirit of pytest-benchmark's ``--benchmark-compare``.

Results are matched by claim, architecture and scale; when each report holds one
architecture and they differ, by claim and scale, so that one architecture is compared with
another. An estimate *moved* when either estimate lies outside the other's 95% interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tabulate import tabulate

from netclaims.report import estimate_text, number_text, sorted_records

Record = Mapping[str, Any]


@dataclass(frozen=True)
class Change:
    """One result in two reports: ``before`` or ``after`` is None where a report lacks it."""

    claim: str
    arch: str
    before: Record | None
    after: Record | None

    @property
    def kind(self) -> str:
        """``only before``, ``only after``, ``verdict``, ``moved`` or ``same``."""
        if self.after is None:
            return "only before"
        if self.before is None:
            return "only after"
        if self.before["verdict"] != self.after["verdict"]:
            return "verdict"
        return "moved" if _moved(self.before, self.after) else "same"

    @property
    def difference(self) -> float | None:
        """``after - before`` of the estimates, when both have one."""
        if self.before is None or self.after is None:
            return None
        a, b = self.before.get("estimate"), self.after.get("estimate")
        return None if a is None or b is None else b - a


def _outside(value: float | None, record: Record) -> bool:
    low, high = record.get("ci_low"), record.get("ci_high")
    return value is not None and low is not None and high is not None \
        and not low <= value <= high


def _moved(before: Record, after: Record) -> bool:
    return _outside(after.get("estimate"), before) or _outside(before.get("estimate"), after)


def _single_arch(report: Mapping[str, Any]) -> str | None:
    archs = {r["arch"] for r in report["records"]}
    return archs.pop() if len(archs) == 1 else None


def compare_reports(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Change]:
    """Every result of either report, matched (see the module docstring), in catalogue
    order."""
    one_before, one_after = _single_arch(before), _single_arch(after)
    across = one_before is not None and one_after is not None and one_before != one_after

    def key(r: Record) -> tuple[str, ...]:
        return (r["id"], r.get("scale", "")) if across else (r["id"], r["arch"],
                                                            r.get("scale", ""))
    old = {key(r): r for r in before["records"]}
    new = {key(r): r for r in after["records"]}
    changes = []
    for r in sorted_records([*after["records"],
                             *(r for r in before["records"] if key(r) not in new)]):
        k = key(r)
        arch = f"{one_before} → {one_after}" if across else r["arch"]
        changes.append(Change(r["id"], arch, old.get(k), new.get(k)))
    return changes


_KIND_TEXT = {"verdict": "verdict changed", "moved": "estimate moved",
              "only before": "only in the first", "only after": "only in the second",
              "same": ""}


def compare_table(changes: Sequence[Change], *, everything: bool = False,
                  tablefmt: str = "simple") -> str:
    """The changed results (every result with ``everything``) as a table, then counts."""
    rows = []
    for c in changes:
        if c.kind == "same" and not everything:
            continue
        rows.append([c.claim, c.arch,
                     c.before["verdict"] if c.before else "-",
                     c.after["verdict"] if c.after else "-",
                     estimate_text(c.before) if c.before else "-",
                     estimate_text(c.after) if c.after else "-",
                     number_text(c.difference), _KIND_TEXT[c.kind]])
    counted = {kind: sum(c.kind == kind for c in changes) for kind in _KIND_TEXT}
    summary = (f"{len(changes)} results: {counted['verdict']} verdicts changed, "
               f"{counted['moved']} estimates moved beyond the other's 95% CI, "
               f"{counted['only before']} only in the first report, {counted['only after']} "
               f"only in the second, {counted['same']} unchanged")
    if not rows:
        return summary
    table = tabulate(rows, ["claim", "arch", "verdict before", "verdict after",
                            "estimate before", "estimate after", "difference", "change"],
                     tablefmt=tablefmt)
    return f"{table}\n\n{summary}"
