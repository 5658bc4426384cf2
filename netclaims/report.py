"""Results of claims: records → pandas DataFrame → terminal table, JSON, Markdown, HTML with the
figures embedded; and baselines (stored verdicts and estimates that later runs are compared
with, the way pytest-regressions compares data files)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from netclaims.claims import PAPERS

SCHEMA_VERSION = 1
OUTCOMES = ("PASS", "FAIL", "INCONCLUSIVE", "ERROR", "N/A")
FIELDS = ("id", "paper", "finding", "arch", "scale", "statistic", "estimate", "ci_low",
          "ci_high", "n", "p_value", "threshold", "verdict", "seconds")


def number_text(x: Any) -> str:
    """A number in 3 significant digits, ``-`` for none or a non-finite one."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def estimate_text(record: Mapping[str, Any]) -> str:
    """``-0.83 [-0.95, -0.61]`` (or ``-`` when there is no estimate)."""
    if record.get("estimate") is None:
        return "-"
    return (f"{number_text(record['estimate'])} [{number_text(record.get('ci_low'))}, "
            f"{number_text(record.get('ci_high'))}]")


def frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (claim, architecture), the report's columns first."""
    df = pd.DataFrame(list(records))
    for col in FIELDS:
        if col not in df.columns:
            df[col] = None
    return df[[*FIELDS, *[c for c in df.columns if c not in FIELDS]]]


def papers(records: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Prefix → title of the papers the records belong to: those declared in this process
    (:data:`netclaims.claims.PAPERS`) in their order, then the others by prefix, titled by
    their records' ``paper_title``."""
    titles = {r["paper"]: r.get("paper_title") or r["paper"] for r in records}
    order = [p for p in PAPERS if p in titles] + sorted(set(titles) - set(PAPERS))
    return {p: PAPERS.get(p, titles[p]) for p in order}


def sorted_records(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Records by paper (declaration order), claim number, then architecture."""
    order = list(papers(records))

    def key(r: Mapping[str, Any]) -> tuple:
        number = str(r["id"]).partition("-")[2]
        return (order.index(r["paper"]), int(number) if number.isdigit() else 0,
                str(r["arch"]))
    return sorted(records, key=key)


def _rows(records: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    return [[r["id"], r["arch"], r.get("statistic") or "-", estimate_text(r),
             number_text(r.get("n")), number_text(r.get("p_value")),
             r.get("threshold") or "-", r["verdict"], number_text(r.get("seconds"))]
            for r in sorted_records(records)]


HEADERS = ["id", "arch", "statistic", "estimate [95% CI]", "n", "p", "needs", "verdict", "s"]


def terminal_table(records: Sequence[Mapping[str, Any]]) -> str:
    """The summary table, one block per paper."""
    blocks = []
    for paper, title in papers(records).items():
        rows = [r for r in records if r["paper"] == paper]
        if rows:
            blocks.append(f"{paper}: {title}\n" + tabulate(_rows(rows), HEADERS,
                                                          tablefmt="simple"))
    counts = {o: sum(r["verdict"] == o for r in records) for o in OUTCOMES}
    blocks.append(", ".join(f"{n} {o}" for o, n in counts.items() if n))
    return "\n\n".join(blocks)


def build_report(records: Sequence[Mapping[str, Any]], provenance: Mapping[str, Any]) -> dict:
    return {"schema": SCHEMA_VERSION, "provenance": dict(provenance),
            "records": [dict(r) for r in sorted_records(records)]}


def _read_json(path: str | os.PathLike, what: str) -> Any:
    try:
        return json.loads(Path(path).read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a netclaims {what}: not JSON ({err})") from err


def load_report(path: str | os.PathLike) -> dict:
    """Read a JSON report, checking its schema version and structure (a ``records`` list
    whose entries name their claim, architecture and verdict)."""
    report = _read_json(path, "report")
    if not isinstance(report, dict):
        raise ValueError(f"{path} is not a netclaims report: a JSON "
                         f"{type(report).__name__}, not an object")
    if report.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"{path}: report schema {report.get('schema')!r}, this netclaims "
                         f"reads schema {SCHEMA_VERSION}")
    records = report.get("records")
    if not isinstance(records, list):
        raise ValueError(f"{path} is not a netclaims report: it has no 'records' list")
    for i, record in enumerate(records):
        missing = [k for k in ("id", "arch", "verdict")
                   if not isinstance(record, dict) or not isinstance(record.get(k), str)]
        if missing:
            raise ValueError(f"{path}: record {i} lacks {', '.join(missing)}")
    if not isinstance(report.get("provenance", {}), dict):
        raise ValueError(f"{path}: 'provenance' is not an object")
    report.setdefault("provenance", {})
    return report


# --------------------------------------------------------------------------- baselines


def baseline_key(record: Mapping[str, Any]) -> str:
    return f"{record['id']}@{record['arch']}@{record['scale']}"


def make_baseline(report: Mapping[str, Any]) -> dict:
    """A baseline from a report: per (claim, architecture, scale) the verdict, the estimate,
    a tolerance (half the 95% CI; edit it to taste) and a one-line reason for every claim
    that did not pass (the verdict's message; edit it to explain the non-replication)."""
    entries = {}
    for r in report["records"]:
        has_ci = r.get("ci_low") is not None and r.get("ci_high") is not None
        entries[baseline_key(r)] = {
            "verdict": r["verdict"], "estimate": r.get("estimate"),
            "tolerance": (r["ci_high"] - r["ci_low"]) / 2 if has_ci else None,
            "reason": "" if r["verdict"] == "PASS" else r.get("message", ""),
        }
    return {"schema": SCHEMA_VERSION, "provenance": report["provenance"], "claims": entries}


@dataclass(frozen=True)
class Baseline:
    """A loaded baseline: its entries by :func:`baseline_key` and the numerics fingerprint of
    the machine that recorded it (None for a baseline that records none)."""

    claims: dict[str, dict]
    numerics: dict[str, Any] | None
    task: str = "mnist1d"


def load_baseline(path: str | os.PathLike) -> Baseline:
    """Read a baseline, checking its schema and structure (a ``claims`` object whose
    entries each record a verdict)."""
    data = _read_json(path, "baseline")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_VERSION \
            or not isinstance(data.get("claims"), dict):
        raise ValueError(f"{path} is not a netclaims baseline (schema {SCHEMA_VERSION}, "
                         "with a 'claims' object)")
    for key, entry in data["claims"].items():
        if not isinstance(entry, dict) or entry.get("verdict") not in OUTCOMES:
            raise ValueError(f"{path}: baseline entry {key!r} records no verdict (one of "
                             f"{', '.join(OUTCOMES)})")
    provenance = data.get("provenance") or {}
    if not isinstance(provenance, dict):
        raise ValueError(f"{path}: 'provenance' is not an object")
    # baselines recorded before tasks could be chosen were all recorded on MNIST-1D
    return Baseline(claims=data["claims"], numerics=provenance.get("numerics"),
                    task=provenance.get("task", "mnist1d"))


# PASS and FAIL are the two decisions of a rule; INCONCLUSIVE lies between them.
_VERDICT_STEPS = {"PASS": 0, "INCONCLUSIVE": 1, "FAIL": 2}


@dataclass(frozen=True)
class BaselineComparison:
    """How a record compares with its baseline entry: a ``departure`` fails the claim; a
    ``note`` is listed under the terminal table and kept as ``baseline_note`` in the report."""

    departure: str | None = None
    note: str | None = None


def compare_to_baseline(record: Mapping[str, Any], entry: Mapping[str, Any] | None, *,
                        same_numerics: bool = True) -> BaselineComparison:
    """Compare ``record`` with its baseline ``entry`` (no entry: nothing to compare).

    On the numerics that recorded the baseline, a changed verdict or an estimate outside the
    entry's tolerance departs from it. On other numerics (another processor or package
    version) training reaches other last bits, which it amplifies into a partly fresh draw of
    the experiment: estimates move past any tolerance drawn from three seeds and a verdict
    near its decision boundary can cross it. There a reversal (PASS <-> FAIL) and any change
    to or from ERROR or N/A depart; one step (PASS <-> INCONCLUSIVE <-> FAIL) and a moved
    estimate are noted."""
    if entry is None:
        return BaselineComparison()
    old, new = entry["verdict"], record["verdict"]
    if old != new:
        change = (f"verdict changed: baseline {old} (estimate "
                  f"{number_text(entry.get('estimate'))}), now {new} (estimate "
                  f"{number_text(record.get('estimate'))})")
        one_step = (old in _VERDICT_STEPS and new in _VERDICT_STEPS
                    and abs(_VERDICT_STEPS[old] - _VERDICT_STEPS[new]) == 1)
        if same_numerics or not one_step:
            return BaselineComparison(departure=change)
        return BaselineComparison(note=f"{change}: one step, on other numerics (not a failure)")
    drift = estimate_drift(record, entry)
    if drift is None:
        return BaselineComparison()
    if same_numerics:
        return BaselineComparison(departure=drift)
    return BaselineComparison(note=f"{drift} on other numerics (not a failure)")


def estimate_drift(record: Mapping[str, Any], entry: Mapping[str, Any] | None) -> str | None:
    """How far ``record``'s estimate moved past its baseline ``entry``'s tolerance, or None."""
    if entry is None:
        return None
    old, new, tol = entry.get("estimate"), record.get("estimate"), entry.get("tolerance")
    if old is not None and new is not None and tol is not None and abs(new - old) > tol:
        return (f"estimate moved: baseline {number_text(old)} ± {number_text(tol)}, now "
                f"{number_text(new)} (difference {number_text(new - old)})")
    return None

