"""The report as a scientist reads it: which findings hold on which architecture, and why not
where they do not.

Every rendering opens with the claims × architectures matrix (one row per claim with its
finding, one column per architecture, each cell the verdict with its estimate [95% CI]) and
the verdict counts per architecture; then every claim with its statistic, rule, numbers,
reasons and figures; the provenance comes last. Terminal text, Markdown, and one
self-contained HTML file (figures as data URIs, filters in a few lines of inline JavaScript,
no network).
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

from netclaims._io import write_json, write_text
from netclaims.report import OUTCOMES, estimate_text, number_text, papers, sorted_records

Record = Mapping[str, Any]


def architectures(report: Mapping[str, Any]) -> list[str]:
    """The report's architectures: those its session named, in order, then any other."""
    named = [str(a) for a in report.get("provenance", {}).get("architectures") or []]
    seen = [r["arch"] for r in report["records"]]
    return list(dict.fromkeys([a for a in named if a in seen] + seen))


def claim_rows(records: Sequence[Record]) -> list[dict[str, Any]]:
    """One entry per claim, in catalogue order: id, paper, finding and its records by
    architecture."""
    rows: dict[str, dict[str, Any]] = {}
    for r in sorted_records(records):
        row = rows.setdefault(r["id"], {"id": r["id"], "paper": r["paper"],
                                        "finding": r.get("finding", ""), "cells": {}})
        row["cells"][r["arch"]] = r
    return list(rows.values())


def counts(records: Sequence[Record], archs: Sequence[str]) -> list[list[Any]]:
    """Rows ``[arch, PASS, FAIL, INCONCLUSIVE, ERROR, N/A]`` of verdict counts."""
    return [[a, *(sum(r["arch"] == a and r["verdict"] == o for r in records)
                  for o in OUTCOMES)] for a in archs]


def reason(record: Record) -> str:
    """Why a claim did not pass on an architecture ('' when it passed): the baseline's
    recorded explanation, else the verdict's own reason, else what the interval shows."""
    verdict = record["verdict"]
    if verdict == "PASS":
        return ""
    if record.get("baseline_reason"):
        return str(record["baseline_reason"])
    if record.get("reason"):
        return str(record["reason"])
    needs = record.get("threshold") or "the rule"
    if verdict == "FAIL" and record.get("estimate") is not None:
        return f"the 95% CI lies against the prediction (needs {needs})"
    if verdict == "INCONCLUSIVE" and record.get("estimate") is not None:
        return f"the 95% CI decides neither way (needs {needs})"
    return str(record.get("message", "")).removeprefix("not applicable: ")


def exclusions(row: Mapping[str, Any], archs: Sequence[str]) -> list[tuple[str, str]]:
    """``(arch, note)`` for each architecture on which a claim left runs out of its evidence
    (they did not train)."""
    notes = []
    for arch in archs:
        left_out = (row["cells"].get(arch) or {}).get("excluded_runs") or []
        if left_out:
            notes.append((arch, f"{arch}: {len(left_out)} run(s) left out, they did not "
                                f"train: " + "; ".join(left_out)))
    return notes


def cell_text(record: Record | None, *, short: bool = False) -> str:
    """``PASS 0.048 [0.03, 0.069]``, or the bare verdict when there is no estimate;
    ``short``: INCONCLUSIVE as INCONC (for terminal widths)."""
    if record is None:
        return "·"
    verdict = record["verdict"]
    if short and verdict == "INCONCLUSIVE":
        verdict = "INCONC"
    estimate = estimate_text(record)
    return verdict if estimate == "-" else f"{verdict} {estimate}"


def _headline(report: Mapping[str, Any]) -> str:
    prov = report.get("provenance", {})
    commit = str(prov.get("git_commit") or "?")[:10]
    forced = prov.get("overrides")
    return (f"scale {prov.get('scale', '?')}, {len(prov.get('seeds') or [])} seeds, task "
            f"{prov.get('task', '?')}, {len(report['records'])} results, netclaims "
            f"{prov.get('netclaims', '?')}, commit {commit}, {prov.get('device', '?')}"
            + (f"; {overrides_note(forced)}" if forced else ""))


def overrides_note(overrides: Mapping[str, Any]) -> str:
    """What ``--netclaims-override`` did to a session's runs, and what that makes its
    verdicts."""
    forced = ", ".join(f"{k}={v!r}" for k, v in overrides.items())
    return f"every run with {forced}: a check of the code path, not evidence"


# --------------------------------------------------------------------------- terminal


def terminal_matrix(report: Mapping[str, Any], *, finding_width: int = 44) -> str:
    """Counts per architecture, then the matrix, findings cut to ``finding_width``."""
    records, archs = report["records"], architectures(report)
    head = tabulate(counts(records, archs), ["arch", *OUTCOMES], tablefmt="simple")
    rows = []
    for row in claim_rows(records):
        finding = row["finding"]
        if len(finding) > finding_width:
            finding = finding[:finding_width - 1] + "…"
        rows.append([row["id"], finding,
                     *(cell_text(row["cells"].get(a), short=True) for a in archs)])
    matrix = tabulate(rows, ["id", "finding", *archs], tablefmt="simple")
    return f"verdicts per architecture\n{head}\n\nclaims × architectures\n{matrix}"


# --------------------------------------------------------------------------- Markdown


def _md(text: Any) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def render_markdown(report: Mapping[str, Any]) -> str:
    """Markdown for pull-request comments: counts, the matrix, then each claim with its
    numbers and reasons per architecture and its figures; provenance folded at the end."""
    records, archs = report["records"], architectures(report)
    rows = claim_rows(records)
    lines = ["# netclaims report", "", _headline(report), "",
             tabulate(counts(records, archs), ["arch", *OUTCOMES], tablefmt="github"), "",
             tabulate([[f"[{row['id']}](#{_anchor(row['id'])})", _md(row["finding"]),
                        *(_md(cell_text(row["cells"].get(a))) for a in archs)]
                       for row in rows], ["claim", "finding", *archs], tablefmt="github")]
    for paper, title in papers(records).items():
        lines += ["", f"## {paper}: {title}"]
        for row in rows:
            if row["paper"] == paper:
                lines += _claim_markdown(row, archs)
    lines += ["", "<details><summary>Provenance</summary>", ""]
    lines += [f"- **{k}**: {_md(v)}" for k, v in report.get("provenance", {}).items()]
    lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def _claim_markdown(row: Mapping[str, Any], archs: Sequence[str]) -> list[str]:
    first = next(iter(row["cells"].values()))
    lines = ["", f'<a id="{_anchor(row["id"])}"></a>', "",
             f"### {row['id']}: {row['finding']}", ""]
    if first.get("summary"):
        lines += [_md(first["summary"]), ""]
    lines += [f"Statistic: {first.get('statistic') or '-'}; rule: "
              f"{first.get('threshold') or '-'}; source: `{first.get('source', '-')}`", "",
              tabulate([[a, r["verdict"], estimate_text(r), number_text(r.get("n")),
                         number_text(r.get("p_value")), _md(reason(r))]
                        for a in archs if (r := row["cells"].get(a)) is not None],
                       ["arch", "verdict", "estimate [95% CI]", "n", "p", "reason"],
                       tablefmt="github")]
    lines += [""] + [f"*{_md(note)}*" for _, note in exclusions(row, archs)]
    figures = [f for r in row["cells"].values() for f in r.get("figures") or []]
    return lines + ([""] + [f"![{Path(f).stem}]({f})" for f in figures] if figures else [])


def _anchor(claim_id: str) -> str:
    return f"claim-{claim_id}".lower()


# --------------------------------------------------------------------------- HTML


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:90em;color:#222}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .5em;
text-align:left;font-size:.9em;vertical-align:top}th{background:#f3f3f3}
.PASS{background:#d9f2d9}.FAIL{background:#f8d0d0}.INCONCLUSIVE{background:#fbecc4}
.ERROR{background:#e6c8f0}.NA{background:#eee}.finding{max-width:34em}
section.claim{border-top:1px solid #ddd;margin-top:1.2em;padding-top:.4em;scroll-margin-top:4em}
.meta{color:#555;font-size:.9em}.reason{max-width:48em}
figure{display:inline-block;margin:.5em;max-width:30em;vertical-align:top}
figure img{max-width:100%}figcaption{font-size:.85em;color:#555}
#filters{position:sticky;top:0;background:#fff;padding:.4em 0;border-bottom:1px solid #ddd}
#filters label{margin-right:.8em}[hidden]{display:none!important}"""

_SCRIPT = """function applyFilters(){
 const paper=document.getElementById('f-paper').value;
 const arch=document.getElementById('f-arch').value;
 const verdicts=[...document.querySelectorAll('.f-verdict:checked')].map(e=>e.value);
 document.querySelectorAll('[data-arch]').forEach(e=>{e.hidden=!!arch&&e.dataset.arch!==arch;});
 document.querySelectorAll('[data-claim]').forEach(e=>{
  const shown=[...e.querySelectorAll('[data-verdict]')].filter(c=>!c.hidden);
  e.hidden=(!!paper&&e.dataset.paper!==paper)||
   !shown.some(c=>verdicts.includes(c.dataset.verdict));});
document.querySelectorAll('[data-heading]').forEach(e=>{
 e.hidden=!!paper&&e.dataset.heading!==paper;});
}
document.querySelectorAll('#filters select,#filters input').forEach(
 e=>e.addEventListener('change',applyFilters));"""


def _css_class(verdict: str) -> str:
    return verdict.replace("/", "")


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _filters(report: Mapping[str, Any], archs: Sequence[str]) -> str:
    esc = html.escape
    paper_options = "".join(f"<option value='{esc(p)}'>{esc(p)}: {esc(t)}</option>"
                            for p, t in papers(report["records"]).items())
    arch_options = "".join(f"<option value='{esc(a)}'>{esc(a)}</option>" for a in archs)
    boxes = "".join(f"<label><input type='checkbox' class='f-verdict' value='{o}' checked>"
                    f"{o}</label>" for o in OUTCOMES)
    return (f"<div id='filters'><label>paper <select id='f-paper'><option value=''>all"
            f"</option>{paper_options}</select></label><label>architecture <select "
            f"id='f-arch'><option value=''>all</option>{arch_options}</select></label>"
            f"{boxes}</div>")


def _matrix_html(report: Mapping[str, Any], archs: Sequence[str]) -> list[str]:
    esc = html.escape
    records = report["records"]
    parts = ["<h2>Verdicts per architecture</h2><table><tr><th>arch</th>"
             + "".join(f"<th class='{_css_class(o)}'>{o}</th>" for o in OUTCOMES) + "</tr>"]
    parts += ["<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>"
              for row in counts(records, archs)]
    parts.append("</table><h2>Claims × architectures</h2><table id='matrix'><tr><th>claim"
                 "</th><th>finding</th>"
                 + "".join(f"<th data-arch='{esc(a)}'>{esc(a)}</th>" for a in archs) + "</tr>")
    for row in claim_rows(records):
        cells = []
        for a in archs:
            r = row["cells"].get(a)
            if r is None:
                cells.append(f"<td data-arch='{esc(a)}' class='NA'>·</td>")
            else:
                cells.append(f"<td data-arch='{esc(a)}' data-verdict='{r['verdict']}' "
                             f"class='{_css_class(r['verdict'])}'>{esc(cell_text(r))}</td>")
        parts.append(f"<tr data-claim='{esc(row['id'])}' data-paper='{esc(row['paper'])}'>"
                     f"<td><a href='#{_anchor(row['id'])}'>{esc(row['id'])}</a></td>"
                     f"<td class='finding'>{esc(row['finding'])}</td>{''.join(cells)}</tr>")
    parts.append("</table>")
    return parts


def _claim_html(row: Mapping[str, Any], title: str, archs: Sequence[str],
                base: Path | None) -> str:
    esc = html.escape
    first = next(iter(row["cells"].values()))
    source = first.get("source")
    source_html = (f"<a href='{esc(first.get('source_href') or '')}'>{esc(source)}</a>"
                   if source else "-")
    paper = esc(title)
    if first.get("paper_url"):
        paper = f"<a href='{esc(first['paper_url'])}'>{paper}</a>"
    parts = [f"<section class='claim' id='{_anchor(row['id'])}' data-claim='{esc(row['id'])}' "
             f"data-paper='{esc(row['paper'])}'><h3>{esc(row['id'])}: "
             f"{esc(row['finding'])}</h3>"
             + (f"<p>{esc(first['summary'])}</p>" if first.get("summary") else "")
             + f"<p class='meta'>paper: {paper} · statistic: "
             f"{esc(first.get('statistic') or '-')} · rule: "
             f"{esc(first.get('threshold') or '-')} · source: {source_html}</p>"
             "<table><tr><th>arch</th><th>verdict</th><th>estimate [95% CI]</th><th>n</th>"
             "<th>p</th><th>reason</th></tr>"]
    figures = []
    for arch in (a for a in archs if a in row["cells"]):
        r = row["cells"][arch]
        parts.append(f"<tr data-arch='{esc(arch)}' data-verdict='{r['verdict']}' "
                     f"class='{_css_class(r['verdict'])}'><td>{esc(arch)}</td>"
                     f"<td>{esc(r['verdict'])}</td><td>{esc(estimate_text(r))}</td>"
                     f"<td>{esc(number_text(r.get('n')))}</td>"
                     f"<td>{esc(number_text(r.get('p_value')))}</td>"
                     f"<td class='reason'>{esc(reason(r))}</td></tr>")
        for fig in r.get("figures") or []:
            path = Path(fig) if base is None or Path(fig).is_absolute() else base / fig
            if path.exists():
                figures.append(f"<figure data-arch='{esc(arch)}'>{_image(path)}<figcaption>"
                               f"{esc(row['id'])} · {esc(arch)} · {esc(path.stem)}"
                               "</figcaption></figure>")
    notes = [f"<p class='meta' data-arch='{esc(arch)}'>{esc(note)}</p>"
             for arch, note in exclusions(row, archs)]
    parts.append("</table>" + "".join(notes)
                 + "".join(figures) + "</section>")
    return "".join(parts)


def render_html(report: Mapping[str, Any], base: Path | None = None) -> str:
    """One self-contained page: filters, counts and the matrix first, then each claim
    (finding, paper, statistic, rule, source, numbers and reason per architecture, figures
    beside it), provenance folded at the end. Figures are read from ``base`` (the report's
    folder) and embedded."""
    esc = html.escape
    archs = architectures(report)
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>netclaims report"
             f"</title><style>{_CSS}</style></head><body><h1>netclaims report</h1>"
             f"<p class='meta'>{esc(_headline(report))}</p>", _filters(report, archs)]
    parts += _matrix_html(report, archs)
    claims = claim_rows(report["records"])
    for paper, title in papers(report["records"]).items():
        parts.append(f"<h2 data-heading='{esc(paper)}'>{esc(paper)}: {esc(title)}</h2>")
        parts += [_claim_html(row, title, archs, base) for row in claims
                  if row["paper"] == paper]
    parts.append("<details><summary>Provenance</summary><table>")
    parts += [f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>"
              for k, v in report.get("provenance", {}).items()]
    parts.append(f"</table></details><script>{_SCRIPT}</script></body></html>")
    return "\n".join(parts)


def write_reports(directory: str | os.PathLike, report: Mapping[str, Any]) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``report.html`` into ``directory``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "md": out / "report.md", "html": out / "report.html"}
    write_json(paths["json"], report)
    write_text(paths["md"], render_markdown(report))
    write_text(paths["html"], render_html(report, out))
    return paths
