"""The ``netclaims`` command: ``inspect``, ``list``, ``run``, ``plan``, ``report``, ``compare``,
``replication``, ``store ls`` and ``store gc``."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from tabulate import tabulate

import netclaims.claims
from netclaims import data as datasets
from netclaims._io import write_text
from netclaims._usage import StoreBusyError
from netclaims.claims import ClaimInfo
from netclaims.cleanup import collect_garbage, kept_runs
from netclaims.compare import compare_reports, compare_table
from netclaims.inventory import iter_entries
from netclaims.preflight import CAPABILITIES, PreflightError, preflight
from netclaims.render import render_html, render_markdown
from netclaims.report import (
    baseline_key,
    estimate_text,
    load_baseline,
    load_report,
)
from netclaims.store import Store


def cmd_list(args: argparse.Namespace) -> int:
    """The claims in ``claims/`` with each one's verdicts in the last report; with
    ``--markdown``, the catalogue as Markdown (id, finding, rule, what it needs of an
    architecture, what it measures and where in the paper)."""
    if args.markdown:
        print(catalogue_markdown(claims_in(_claims_dir(args))))
        return 0
    status: dict[str, list[str]] = {}
    report_path = Path(args.report)
    if report_path.exists():
        for r in load_report(report_path)["records"]:
            status.setdefault(r["id"], []).append(f"{r['arch']}: {r['verdict']} "
                                                  f"{estimate_text(r)}")
    claims = claims_in(_claims_dir(args))
    known = {info.id for info in claims}
    rows = [[info.id, info.finding, "; ".join(status.get(info.id, ["not run"]))]
            for info in claims]
    rows += [[cid, "(not in claims/)", "; ".join(v)] for cid, v in status.items()
             if cid not in known]
    if not rows:
        print(f"no claims found in {_claims_dir(args)} and no report at {args.report}")
        return 0
    print(tabulate(rows, ["id", "finding", "last report"], tablefmt="simple"))
    return 0


def catalogue_markdown(claims: list[ClaimInfo]) -> str:
    """One table per paper: id, finding, rule, requirements and the claim's summary."""
    blocks = []
    for paper, title in netclaims.claims.PAPERS.items():
        rows = [[c.id, c.finding, c.rule.describe().replace("|", "/"),
                 ", ".join(sorted(c.requires)) or "-", c.summary.replace("|", "/")]
                for c in claims if c.paper == paper]
        if rows:
            blocks.append(f"## {paper}: {title}\n\n" + tabulate(
                rows, ["id", "finding", "rule (PASS when)", "needs", "what is measured"],
                tablefmt="github"))
    return "\n\n".join(blocks)


def claims_in(claims_dir: Path) -> list[ClaimInfo]:
    """The claims declared by the ``test_*.py`` files of a folder, imported (not run) after
    the folder's ``conftest.py``, where a suite may declare its papers."""
    infos = []
    paths = sorted(claims_dir.glob("test_*.py"))
    conftest = claims_dir / "conftest.py"
    folder = str(claims_dir.resolve())
    added = folder not in sys.path
    if added:  # as pytest's default import mode does: the files import their helper modules
        sys.path.insert(0, folder)
    try:
        for path in ([conftest] if conftest.exists() else []) + paths:
            spec = importlib.util.spec_from_file_location(f"_netclaims_claims_{path.stem}",
                                                          path)
            if spec is None or spec.loader is None:
                raise ValueError(f"{path} cannot be imported as a Python module")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            infos += [fn.netclaims_claim for fn in vars(module).values()
                      if hasattr(fn, "netclaims_claim")]
    finally:
        if added:
            sys.path.remove(folder)
    return infos


def cmd_inspect(args: argparse.Namespace) -> int:
    """What the claims see of an architecture on a task: its unit layers, its capabilities,
    and which claims run on it or are N/A and why (the session's preflight, without
    training anything)."""
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # import module:callable from here, as pytest does
    task = datasets.load(args.task)
    try:
        arch = preflight(args.spec, task)
    except PreflightError as err:
        print(f"netclaims inspect: {err}", file=sys.stderr)
        return 4
    print(f"{arch.name} on task {task.name} (input_shape {task.input_shape}, "
          f"{task.num_classes} classes)\n")
    print(tabulate([[u.name, u.stage, u.units, u.shape, "yes" if u.nonnegative else "no"]
                    for u in arch.layers],
                   ["unit layer", "stage", "units", "activation (without batch)", ">= 0"],
                   tablefmt="simple"))
    reasons = dict(arch.missing)
    offered = [[c, "yes" if c in arch.capabilities else f"no: {reasons.get(c, 'none found')}"]
               for c in CAPABILITIES]
    print("\n" + tabulate(offered, ["capability", "offered"], tablefmt="simple"))
    claims_dir = _claims_dir(args)
    if claims_dir.is_dir():
        rows = [[info.id, info.finding, arch.why_not(info.requires) or "runs"]
                for info in claims_in(claims_dir)]
        runs = sum(row[2] == "runs" for row in rows)
        print(f"\nclaims in {claims_dir}: {runs} run, {len(rows) - runs} N/A\n")
        print(tabulate(rows, ["id", "finding", "on this architecture"], tablefmt="simple",
                       maxcolwidths=[None, 50, 70]))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Re-render Markdown and HTML from a JSON report (next to it, or into ``--out``); the
    figures are read from the JSON report's folder, where the report names them."""
    report = load_report(args.path)
    out = Path(args.out) if args.out else Path(args.path).parent
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "report.md", render_markdown(report))
    write_text(out / "report.html", render_html(report, Path(args.path).parent))
    print(f"wrote {out / 'report.md'} and {out / 'report.html'}")
    return 0


START, END = "<!-- replication:start -->", "<!-- replication:end -->"


def replication_table(report: dict, baseline: dict[str, dict] | None = None) -> str:
    """Markdown: claim, architecture, verdict, estimate [CI], and for every claim that did not
    pass the one-line reason its baseline records (else the verdict's message)."""
    rows = []
    for r in report["records"]:
        reason = ""
        if r["verdict"] != "PASS":
            entry = (baseline or {}).get(baseline_key(r), {})
            reason = entry.get("reason") or r.get("message", "")
        rows.append([f"{r['id']}", r["arch"], r["verdict"], estimate_text(r),
                     "" if r.get("n") is None else r["n"],
                     reason.replace("|", "/").replace("\n", " ")])
    scale = report["provenance"].get("scale", "?")
    head = (f"Scale {scale}, seeds {report['provenance'].get('seeds')} (a suite may take more; "
            f"n is what each estimate rests on), "
            f"netclaims {report['provenance'].get('netclaims')}, "
            f"commit {str(report['provenance'].get('git_commit'))[:10]}.\n\n")
    return head + tabulate(rows, ["claim", "arch", "verdict", "estimate [95% CI]", "n",
                                  "reason (non-replications)"], tablefmt="github")


def cmd_replication(args: argparse.Namespace) -> int:
    """Print the replication table, or rewrite it between the markers in ``--readme``."""
    baseline = load_baseline(args.baseline).claims if args.baseline else None
    table = replication_table(load_report(args.report), baseline)
    if not args.readme:
        print(table)
        return 0
    path = Path(args.readme)
    text = path.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{path} has no {START} ... {END} section to rewrite")
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    path.write_text(f"{before}{START}\n{table}\n{END}{after}")
    print(f"rewrote the replication table in {path}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """``pytest ARGS --netclaims-plan``: the claims run with stand-in runs, nothing trains, and
    the plan table closes the output."""
    import pytest

    return int(pytest.main([*(args.pytest_args or [str(suite_path())]), "--netclaims-plan",
                            "-q"]))


def cmd_run(args: argparse.Namespace) -> int:
    """``pytest <the built-in suite> ARGS``."""
    import pytest

    return int(pytest.main([str(suite_path()), *args.pytest_args]))


def _claims_dir(args: argparse.Namespace) -> Path:
    return Path(args.claims) if args.claims else suite_path()


def suite_path() -> Path:
    """The built-in claims: ``claims/`` of this checkout, or the installed package's
    ``netclaims.suite`` (the same files, shipped in the wheel)."""
    checkout = Path(netclaims.__file__).resolve().parents[1] / "claims"
    if checkout.is_dir():
        return checkout
    spec = importlib.util.find_spec("netclaims.suite")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the built-in claims are not installed with this netclaims")
    return Path(next(iter(spec.submodule_search_locations)))


def cmd_compare(args: argparse.Namespace) -> int:
    """Which verdicts and estimates moved from the first report to the second; exit code 1
    with ``--fail-on-change`` when a verdict changed or a result is in one report only."""
    changes = compare_reports(load_report(args.before), load_report(args.after))
    print(compare_table(changes, everything=args.all,
                        tablefmt="github" if args.markdown else "simple"))
    changed = any(c.kind not in ("same", "moved") for c in changes)
    return 1 if args.fail_on_change and changed else 0


def cmd_store_ls(args: argparse.Namespace) -> int:
    store = Store(args.store)
    entries = list(iter_entries(store))
    total = sum(e["bytes"] for e in entries)
    rows = [[e["key"], e["label"], e["epochs"], f"{e['bytes'] / 1e6:.2f}"] for e in entries]
    print(tabulate(rows, ["key", "run", "epochs", "MB"], tablefmt="simple"))
    print(f"{len(entries)} runs, {total / 1e6:.1f} MB in {store.path}")
    return 0


def cmd_store_gc(args: argparse.Namespace) -> int:
    """Remove interrupted work, damaged entries, stale derived results and lock files, and
    (with ``--report``) every entry none of those reports read; nothing while another
    process uses the store."""
    store = Store(args.store)
    keep = kept_runs(load_report(path) for path in args.report) if args.report else None
    try:
        doomed = collect_garbage(store, keep, dry_run=args.dry_run)
    except StoreBusyError as err:
        print(f"netclaims store gc: {err}", file=sys.stderr)
        return 3
    for path in doomed:
        print(f"{'would remove' if args.dry_run else 'removed'} {path}")
    print(f"{len(doomed)} folders or files, {sum(doomed.values()) / 1e6:.1f} MB "
          f"{'reclaimable' if args.dry_run else 'freed'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["run"], ["plan"]) and not {"-h", "--help"} & set(argv[1:2]):
        # everything after the command is pytest's, options included
        command = cmd_run if argv[0] == "run" else cmd_plan
        return command(argparse.Namespace(pytest_args=argv[1:]))
    parser = argparse.ArgumentParser(prog="netclaims", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="an architecture's units, capabilities and claims")
    p.add_argument("spec", help="a registered model name or module:callable")
    p.add_argument("--task", default="mnist1d", choices=datasets.available(),
                   help="dataset whose inputs it is built for (default: mnist1d)")
    p.add_argument("--claims", default=None, help="claims folder (default: the built-in "
                                                   "suite)")
    p.set_defaults(fn=cmd_inspect)
    p = sub.add_parser("list", help="the claims and their status in the last report")
    p.add_argument("--claims", default=None, help="claims folder (default: the built-in "
                                                   "suite)")
    p.add_argument("--report", default="netclaims-report/report.json")
    p.add_argument("--markdown", action="store_true",
                   help="print the catalogue as Markdown (docs/catalogue.md is made so)")
    p.set_defaults(fn=cmd_list)
    p = sub.add_parser("report", help="re-render Markdown/HTML from a JSON report")
    p.add_argument("path")
    p.add_argument("--out", help="folder to write into (default: beside the JSON)")
    p.set_defaults(fn=cmd_report)
    p = sub.add_parser("compare", help="which verdicts and estimates moved between two "
                                       "JSON reports")
    p.add_argument("before", help="the first report.json (e.g. of the main branch)")
    p.add_argument("after", help="the second report.json (e.g. of this change)")
    p.add_argument("--all", action="store_true", help="list unchanged results too")
    p.add_argument("--markdown", action="store_true", help="a Markdown table (for a pull "
                                                           "request comment)")
    p.add_argument("--fail-on-change", action="store_true",
                   help="exit 1 when a verdict changed or a result is in one report only")
    p.set_defaults(fn=cmd_compare)
    p = sub.add_parser("replication", help="the README's replication table from a report")
    p.add_argument("report")
    p.add_argument("--baseline", help="baseline whose reasons explain non-replications")
    p.add_argument("--readme", help="rewrite the table between the markers in this file")
    p.set_defaults(fn=cmd_replication)
    p = sub.add_parser("store", help="inspect or clean the run store")
    store_sub = p.add_subparsers(dest="store_command", required=True)
    for name, fn in (("ls", cmd_store_ls), ("gc", cmd_store_gc)):
        q = store_sub.add_parser(name)
        q.add_argument("--store", help="store folder (default: $NETCLAIMS_STORE or the cache)")
        if name == "gc":
            q.add_argument("--report", action="append",
                           help="keep only the runs this JSON report read (repeatable: the "
                                "runs any of them read)")
            q.add_argument("--dry-run", action="store_true")
        q.set_defaults(fn=fn)
    p = sub.add_parser("run", help="the built-in claims with pytest (what `pytest claims/` "
                                   "runs in a checkout, from an installed netclaims too)")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER,
                   help="options and selections for pytest, e.g. --netclaims-arch "
                        "mypkg.nets:make_net -m SD")
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("plan", help="how many runs a selection of claims needs, how many are "
                                    "in the store, and the estimated training time (trains "
                                    "nothing)")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER,
                   help="what to select, as for pytest (default: claims/), e.g. claims/ "
                        "--netclaims-scale paper -m SD")
    p.set_defaults(fn=cmd_plan)
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except (OSError, ValueError, json.JSONDecodeError) as err:
        print(f"netclaims: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
