"""Results of claims: records → pandas DataFrame → terminal table, JSON, Markdown, HTML with the
figures embedded; and baselines (stored verdicts and estimates that later runs are compared
with, the way pytest-regressions compares data files)."""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from netclaims._io import write_json, write_text
from netclaims.claims import PAPERS

SCHEMA_VERSION = 1
OUTCOMES = ("PASS", "FAIL", "INCONCLUSIVE", "ERROR", "N/A")
FIELDS = ("id", "paper", "finding", "arch", "scale", "statistic", "estimate", "ci_low",
          "ci_high", "n", "p_value", "threshold", "verdict", "seconds")


def _num(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def estimate_text(record: Mapping[str, Any]) -> str:
    """``-0.83 [-0.95, -0.61]`` (or ``-`` when there is no estimate)."""
    if record.get("estimate") is None:
        return "-"
    return (f"{_num(record['estimate'])} [{_num(record.get('ci_low'))}, "
            f"{_num(record.get('ci_high'))}]")


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


def _sorted(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    order = list(papers(records))

    def key(r: Mapping[str, Any]) -> tuple:
        number = str(r["id"]).partition("-")[2]
        return (order.index(r["paper"]), int(number) if number.isdigit() else 0,
                str(r["arch"]))
    return sorted(records, key=key)


def _rows(records: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    return [[r["id"], r["arch"], r.get("statistic") or "-", estimate_text(r), _num(r.get("n")),
             _num(r.get("p_value")), r.get("threshold") or "-", r["verdict"],
             _num(r.get("seconds"))] for r in _sorted(records)]


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
            "records": [dict(r) for r in _sorted(records)]}


def write_reports(directory: str | os.PathLike, report: Mapping[str, Any]) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``report.html`` into ``directory``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "md": out / "report.md", "html": out / "report.html"}
    write_json(paths["json"], report)
    write_text(paths["md"], render_markdown(report))
    write_text(paths["html"], render_html(report, out))
    return paths


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


def _provenance_lines(prov: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(k, str(v)) for k, v in prov.items()]


def render_markdown(report: Mapping[str, Any]) -> str:
    """A Markdown report for pull-request comments: provenance, then a table per paper."""
    records = report["records"]
    lines = ["# netclaims report", ""]
    lines += [f"- **{k}**: {v}" for k, v in _provenance_lines(report["provenance"])]
    for paper, title in papers(records).items():
        rows = [r for r in records if r["paper"] == paper]
        if not rows:
            continue
        lines += ["", f"## {paper}: {title}", "",
                  tabulate(_rows(rows), HEADERS, tablefmt="github")]
        notes = [r for r in _sorted(rows) if r["verdict"] != "PASS" and r.get("message")]
        if notes:
            lines += [""] + [f"- `{r['id']}` on `{r['arch']}`: {r['message']}" for r in notes]
    return "\n".join(lines) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:78em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;
text-align:left;font-size:.9em}th{background:#f3f3f3}.PASS{background:#d9f2d9}
.FAIL{background:#f8d0d0}.INCONCLUSIVE{background:#fbecc4}.ERROR{background:#e6c8f0}
.NA{background:#eee}figure{display:inline-block;margin:.5em;max-width:32em}
figure img{max-width:100%}figcaption{font-size:.85em;color:#555}"""


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def render_html(report: Mapping[str, Any], base: Path | None = None) -> str:
    """A self-contained HTML page: provenance, a table per paper, every figure embedded as a
    PNG data URI (no network)."""
    esc = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>netclaims report</title>",
             f"<style>{_CSS}</style></head><body><h1>netclaims report</h1><table>"]
    parts += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>"
              for k, v in _provenance_lines(report["provenance"])]
    parts.append("</table>")
    records = report["records"]
    for paper, title in papers(records).items():
        rows = [r for r in _sorted(records) if r["paper"] == paper]
        if not rows:
            continue
        parts.append(f"<h2>{esc(paper)}: {esc(title)}</h2><table><tr>"
                     + "".join(f"<th>{esc(h)}</th>" for h in HEADERS) + "</tr>")
        for r, cells in zip(rows, _rows(rows), strict=True):
            css = r["verdict"].replace("/", "")
            title_attr = esc(f"{r.get('finding', '')} {r.get('message', '')}".strip())
            parts.append(f"<tr class='{css}' title='{title_attr}'>"
                         + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
        for r in rows:
            for fig in r.get("figures") or []:
                path = Path(fig) if base is None or Path(fig).is_absolute() else base / fig
                if path.exists():
                    parts.append(f"<figure>{_image(path)}<figcaption>{esc(r['id'])} · "
                                 f"{esc(r['arch'])} · {esc(path.stem)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


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
        change = (f"verdict changed: baseline {old} (estimate {_num(entry.get('estimate'))}), "
                  f"now {new} (estimate {_num(record.get('estimate'))})")
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
        return (f"estimate moved: baseline {_num(old)} ± {_num(tol)}, now {_num(new)} "
                f"(difference {_num(new - old)})")
    return None

