"""The pytest plugin: outcomes, architectures, baselines, reports, xdist (pytester)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from netclaims.report import estimate_text

pytest_plugins = ["pytester"]


def literal(text: str) -> str:
    """An fnmatch pattern matching ``text`` anywhere, brackets taken literally."""
    return "*" + "".join("[[]" if c == "[" else "[]]" if c == "]" else c for c in text) + "*"

OUTCOMES = '''
from netclaims.claims import claim
from netclaims.stats import Estimate, Evidence, Rule

def _rho(value, lo, hi):
    return Estimate("rho", value, lo, hi, 12, 0.01)

@claim("SD-1", finding="passes", rule=Rule("less", min_effect=-0.5))
def test_passes():
    return _rho(-0.83, -0.95, -0.61)

@claim("SD-2", finding="fails", rule=Rule("less"))
def test_fails():
    return _rho(0.4, 0.1, 0.7)

@claim("SD-3", finding="inconclusive", rule=Rule("less"))
def test_inconclusive():
    return _rho(-0.1, -0.4, 0.2)

@claim("SD-4", finding="crashes", rule=Rule("less"))
def test_crashes():
    raise RuntimeError("the protocol broke")

@claim("RD-9", finding="needs a transformer", rule=Rule("greater"), requires=["transformer"])
def test_needs_transformer(arch):
    raise AssertionError("must not run on a non-transformer")

@claim("SD-5", finding="forgets to return", rule=Rule("less"))
def test_no_estimate():
    pass

@claim("SD-6", finding="holds only with its second condition",
       rule=Rule("less", also=("hit rate > chance",)))
def test_second_condition():
    return Evidence(_rho(-0.83, -0.95, -0.61), {"hit_rate": 0.1},
                    checks={"hit rate > chance": False})
'''


PAPERS = '''
from netclaims.claims import paper

paper("SE", "Class selectivity in early epochs")
paper("SD", "Reliance on single directions (Morcos et al. 2018)")
paper("RD", "Training dynamics of representations")
'''


@pytest.fixture
def claims_env(pytester, tmp_path, monkeypatch):
    monkeypatch.setenv("NETCLAIMS_STORE", str(tmp_path / "store"))
    pytester.makeconftest(PAPERS)
    return pytester


def test_entry_point_registered():
    names = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert names.get("netclaims") == "netclaims.plugin"


def test_every_outcome(claims_env):
    claims_env.makepyfile(test_claims=OUTCOMES)
    result = claims_env.runpytest("--netclaims-arch", "mlp", "-rA")
    result.assert_outcomes(passed=1, failed=5, skipped=1)
    for line in (literal("SD-2 fails: rho=0.4 [0.1,0.7] n=12 p=0.01, needs CI < 0 -> FAIL"),
                 literal("SD-3 inconclusive: rho=-0.1 [-0.4,0.2] n=12 p=0.01, needs CI < 0 -> "
                         "INCONCLUSIVE"),
                 literal("needs CI < 0; hit rate > chance -> INCONCLUSIVE (not met: hit rate "
                         "> chance)"),
                 "*RuntimeError: the protocol broke*",
                 "SKIPPED*test_claims.py*not applicable: RD-9 needs attention layers "
                 "(nn.MultiheadAttention) (none found)*",
                 "*claim SD-5 returned NoneType; a claim returns what it measured*"):
        result.stdout.fnmatch_lines([line])
    report = json.loads((claims_env.path / "netclaims-report" / "report.json").read_text())
    verdicts = {r["id"]: r["verdict"] for r in report["records"]}
    assert verdicts == {"SD-1": "PASS", "SD-2": "FAIL", "SD-3": "INCONCLUSIVE",
                        "SD-4": "ERROR", "SD-5": "ERROR", "SD-6": "INCONCLUSIVE",
                        "RD-9": "N/A"}
    details = {r["id"]: r.get("details") for r in report["records"]}
    assert details["SD-6"] == {"hit_rate": 0.1}
    result.stdout.fnmatch_lines(["*= netclaims =*", "SD: Reliance on single directions*",
                                 "*1 PASS, 1 FAIL, 2 INCONCLUSIVE, 2 ERROR, 1 N/A*"])


def test_inconclusive_may_pass(claims_env):
    claims_env.makepyfile(test_claims=OUTCOMES)
    result = claims_env.runpytest("--netclaims-arch", "mlp", "-k", "SD_3",
                                  "--netclaims-inconclusive", "pass")
    result.assert_outcomes(passed=1)


def test_json_schema_and_markdown_html(claims_env):
    claims_env.makepyfile(test_claims=OUTCOMES)
    claims_env.runpytest("--netclaims-arch", "mlp", "-k", "SD_1 or SD_2")
    folder = claims_env.path / "netclaims-report"
    report = json.loads((folder / "report.json").read_text())
    assert report["schema"] == 1
    for key in ("netclaims", "python", "torch", "device", "scale", "seeds", "command",
                "git_commit", "numerics"):
        assert key in report["provenance"]
    record = report["records"][0]
    for key in ("id", "paper", "finding", "arch", "scale", "statistic", "estimate", "ci_low",
                "ci_high", "n", "p_value", "threshold", "verdict", "seconds", "figures"):
        assert key in record
    markdown, html = (folder / "report.md").read_text(), (folder / "report.html").read_text()
    assert "| [SD-1](#claim-sd-1) " in markdown and "<table" in html
    for record in report["records"]:  # the numbers the verdict carried, in every format
        assert (record["estimate"], record["ci_low"], record["ci_high"], record["p_value"]) \
            in ((-0.83, -0.95, -0.61, 0.01), (0.4, 0.1, 0.7, 0.01))
        text = estimate_text(record)
        assert text in markdown and text in html, text


TWO_ARCHS = '''
from netclaims.claims import claim
from netclaims.stats import Estimate, Rule

@claim("SD-1", finding="holds on the MLP only", rule=Rule("less"))
def test_differs(arch):
    """rho(x, y) < 0 (paper Fig. 2a).

    Protocol details that stay in the source.
    """
    if arch.name == "mlp":
        return Estimate("rho", -0.8, -0.9, -0.6, 12, 0.01)
    return Estimate("rho", 0.5, 0.2, 0.7, 12, 0.01)

@claim("SD-2", finding="undecided everywhere", rule=Rule("greater"))
def test_undecided(arch):
    return Estimate("d", 0.1, -0.2, 0.4, 3, 0.4)
'''


class _Text(HTMLParser):
    """The text of every element of a page, one string per element."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.texts.append(data.strip())


def test_the_report_opens_with_the_matrix_and_shows_every_reason(claims_env):
    claims_env.makepyfile(test_claims=TWO_ARCHS)
    result = claims_env.runpytest("--netclaims-arch", "mlp", "--netclaims-arch", "convnet")
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines([
        "*verdicts per architecture*", "arch*PASS*FAIL*INCONCLUSIVE*ERROR*N/A*",
        "mlp*1*0*1*0*0*", "convnet*0*1*1*0*0*",
        "*claims × architectures*", "id*finding*mlp*convnet*",
        "SD-1*holds on the MLP only*PASS -0.8 [[]-0.9, -0.6[]]*FAIL 0.5 [[]0.2, 0.7[]]*",
        "SD-2*undecided everywhere*INCONC 0.1*INCONC 0.1*"])
    folder = claims_env.path / "netclaims-report"
    report = json.loads((folder / "report.json").read_text())
    page = (folder / "report.html").read_text()
    markdown = (folder / "report.md").read_text()
    parser = _Text()
    parser.feed(page)
    reasons = {"the 95% CI lies against the prediction (needs CI < 0)",
               "the 95% CI decides neither way (needs CI > 0)"}
    for record in report["records"]:
        assert record["finding"] in parser.texts  # as the text of an element, not a tooltip
        assert record["source"].startswith("test_claims.py:")
    assert reasons <= set(parser.texts)
    assert "rho(x, y) < 0 (paper Fig. 2a)." in parser.texts  # what is measured, where
    assert "Protocol details" not in page
    assert all(reason in markdown for reason in reasons)
    # the matrix comes first: counts, then claims × architectures, then the claims
    assert page.index("Verdicts per architecture") < page.index("id='matrix'") \
        < page.index("id='claim-sd-1'") < page.index("<summary>Provenance")
    assert re.search(r"\| \[SD-1\]\(#claim-sd-1\) +\| holds on the MLP only +\| PASS -0.8 "
                     r"\[-0.9, -0.6\] +\| FAIL 0.5 \[0.2, 0.7\] +\|", markdown)
    assert '<a id="claim-sd-1"></a>' in markdown
    assert "http" not in page.replace("http-equiv", "")  # self-contained


def test_a_session_compares_itself_with_an_earlier_report(claims_env):
    claims_env.makepyfile(test_claims=TWO_ARCHS)
    claims_env.runpytest("--netclaims-arch", "mlp", "--netclaims-arch", "convnet")
    earlier = json.loads((claims_env.path / "netclaims-report" / "report.json").read_text())
    for record in earlier["records"]:
        if record["id"] == "SD-2" and record["arch"] == "mlp":
            record["verdict"] = "PASS"
    (claims_env.path / "earlier.json").write_text(json.dumps(earlier))
    result = claims_env.runpytest("--netclaims-arch", "mlp", "--netclaims-arch", "convnet",
                                  "--netclaims-compare", "earlier.json")
    result.stdout.fnmatch_lines(["*compared with --netclaims-compare*",
                                 "SD-2*mlp*PASS*INCONCLUSIVE*verdict changed",
                                 "4 results: 1 verdicts changed, 0 estimates moved*"])
    bad = claims_env.runpytest("--netclaims-compare", "missing.json")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR


DERIVING_CLAIM = '''
import torch

from netclaims.claims import claim
from netclaims.stats import Estimate, Rule


def weight_sum(run):
    """Pickled by reference: a pool worker imports this module, without the conftest."""
    return run.derived("sum", {}, lambda: {"sum": sum(p.sum() for p in run.model.parameters())})


@claim("SD-1", finding="measured in the worker that trained the run", rule=Rule("greater"))
def test_derives(arch, train_runs):
    runs = train_runs(arch, [{"dataset": "digits", "width": 0.25, "epochs": 6, "seed": s}
                             for s in range(2)], derive=weight_sum)
    assert all(torch.isfinite(weight_sum(run)["sum"]) for run in runs)
    return Estimate("x", 0.5, 0.4, 0.6, 3, 0.01)
'''


def test_a_claims_module_is_importable_in_a_pool_worker(claims_env):
    claims_env.makepyfile(test_derive=DERIVING_CLAIM)
    result = claims_env.runpytest_subprocess("--netclaims-arch", "mlp", "--netclaims-executor",
                                             "process")
    result.assert_outcomes(passed=1)
    assert "BrokenProcessPool" not in result.stdout.str()
    # progress without -s, as plain lines in a log (the output is not a terminal)
    result.stdout.fnmatch_lines(["[[]netclaims[]] SD-1 on mlp: training 2 runs",
                                 "[[]netclaims[]] SD-1 on mlp: 2 runs trained in 0:*"])


def test_a_claim_of_an_undeclared_paper_is_a_usage_error(claims_env):
    claims_env.makepyfile(test_zz='''
from netclaims.claims import claim
from netclaims.stats import Estimate, Rule

@claim("ZZ-1", finding="of no declared paper", rule=Rule("greater"))
def test_zz():
    return Estimate("x", 1.0, 0.5, 1.5, 3, 0.01)
''')
    result = claims_env.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*claims of undeclared papers: ZZ-1 (ZZ); declare each paper "
                                 "with netclaims.claims.paper(PREFIX, 'title')*"])


KEEP_HEALTHY = '''
from netclaims.claims import claim
from netclaims.stats import Estimate, Rule

@claim("SD-1", finding="a zoo of trained nets", rule=Rule("greater"))
def test_zoo(arch, train_runs, keep_healthy):
    fields = [{"dataset": "digits", "width": 0.25, "epochs": 6, "seed": s} for s in (0, 1)]
    fields.append({"dataset": "digits", "width": 0.25, "epochs": 1, "lr": 1e-7, "seed": 2})
    runs = train_runs(arch, fields, read=False)
    kept = keep_healthy(runs)
    assert [run.spec.seed for run in kept] == [0, 1]
    return Estimate("x", 0.5, 0.4, 0.6, len(kept), 0.01)
'''


def test_a_zoo_leaves_out_the_runs_that_did_not_train_and_says_so(claims_env):
    claims_env.makepyfile(test_zoo=KEEP_HEALTHY)
    result = claims_env.runpytest("--netclaims-arch", "mlp", "--netclaims-executor", "inline")
    result.assert_outcomes(passed=1)  # evidence from the runs that trained, not INCONCLUSIVE
    folder = claims_env.path / "netclaims-report"
    (record,) = json.loads((folder / "report.json").read_text())["records"]
    (left_out,) = record["excluded_runs"]
    assert left_out.startswith("mlp/digits") and "seed=2" in left_out and "did not train" in \
        left_out
    assert len(record["runs"]) == 3  # all three are the record's (store gc keeps them)
    for page in ("report.html", "report.md"):
        assert "mlp: 1 run(s) left out, they did not train" in (folder / page).read_text()


def test_a_non_finite_estimate_is_an_error_that_fails(claims_env):
    claims_env.makepyfile(test_nan="""
import math
from netclaims.claims import claim
from netclaims.stats import Estimate, Rule

@claim("SD-8", finding="nan", rule=Rule("less"))
def test_nan():
    return Estimate("d", math.nan, -1.0, 1.0, 3, None)
""")
    result = claims_env.runpytest("--netclaims-arch", "mlp")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*SD-8 nan: non-finite estimate or CI -> ERROR*"])
    report = json.loads((claims_env.path / "netclaims-report" / "report.json").read_text())
    assert [r["verdict"] for r in report["records"]] == ["ERROR"]


def test_junitxml_carries_numbers(claims_env):
    claims_env.makepyfile(test_claims=OUTCOMES)
    claims_env.runpytest("--netclaims-arch", "mlp", "-k", "SD_1", "--junitxml=out.xml")
    xml = (claims_env.path / "out.xml").read_text()
    assert 'name="netclaims_estimate" value="-0.83"' in xml


BASELINE_CLAIM = '''
import os
from netclaims.claims import claim
from netclaims.stats import Estimate, Rule

@claim("SD-7", finding="batch norm", rule=Rule("greater"))
def test_batchnorm():
    value = float(os.environ.get("EFFECT", "0.5"))
    return Estimate("diff", value, value - 0.1, value + 0.1, 6)
'''


def test_baseline_unchanged_changed_and_moved(claims_env, monkeypatch):
    claims_env.makepyfile(test_claims=BASELINE_CLAIM)
    saved = claims_env.runpytest("--netclaims-save-baseline", "base.json")
    saved.assert_outcomes(passed=1)
    base = json.loads((claims_env.path / "base.json").read_text())
    assert base["claims"]["SD-7@-@smoke"]["verdict"] == "PASS"
    assert claims_env.runpytest("--netclaims-baseline", "base.json").ret == 0
    monkeypatch.setenv("EFFECT", "0.55")  # within the tolerance (half CI width 0.1)
    assert claims_env.runpytest("--netclaims-baseline", "base.json").ret == 0
    monkeypatch.setenv("EFFECT", "0.75")
    moved = claims_env.runpytest("--netclaims-baseline", "base.json")
    moved.assert_outcomes(failed=1)
    moved.stdout.fnmatch_lines(["*estimate moved: baseline 0.5 ± 0.1, now 0.75*"])
    monkeypatch.setenv("EFFECT", "-0.5")
    changed = claims_env.runpytest("--netclaims-baseline", "base.json")
    changed.stdout.fnmatch_lines(["*verdict changed: baseline PASS (estimate 0.5), now FAIL*"])


def test_baseline_from_other_numerics_fails_reversals_and_notes_the_rest(claims_env,
                                                                          monkeypatch):
    claims_env.makepyfile(test_claims=BASELINE_CLAIM)
    claims_env.runpytest("--netclaims-save-baseline", "base.json").assert_outcomes(passed=1)
    base = json.loads((claims_env.path / "base.json").read_text())
    assert base["provenance"]["numerics"]["torch"]
    base["provenance"]["numerics"]["torch"] = "0.0.1"
    (claims_env.path / "base.json").write_text(json.dumps(base))
    monkeypatch.setenv("EFFECT", "0.75")
    moved = claims_env.runpytest("--netclaims-baseline", "base.json")
    moved.assert_outcomes(passed=1)
    moved.stdout.fnmatch_lines([
        "numerics: torch *",
        "baseline: reversed verdicts fail; one-step verdict changes and estimate moves are "
        "only noted*(torch 0.0.1 -> *)",
        "  SD-7 -: estimate moved: baseline 0.5 ± 0.1, now 0.75 * on other numerics*"])
    report = json.loads((claims_env.path / "netclaims-report" / "report.json").read_text())
    assert "estimate moved" in report["records"][0]["baseline_note"]
    monkeypatch.setenv("EFFECT", "0.05")  # CI [-0.05, 0.15] reaches 0: one step to INCONCLUSIVE
    stepped = claims_env.runpytest("--netclaims-baseline", "base.json")
    stepped.assert_outcomes(passed=1)
    stepped.stdout.fnmatch_lines(["  SD-7 -: verdict changed: baseline PASS (estimate 0.5), now "
                                  "INCONCLUSIVE (estimate 0.05): one step, on other numerics*"])
    report = json.loads((claims_env.path / "netclaims-report" / "report.json").read_text())
    assert report["records"][0]["verdict"] == "INCONCLUSIVE"
    monkeypatch.setenv("EFFECT", "-0.5")
    changed = claims_env.runpytest("--netclaims-baseline", "base.json")
    changed.assert_outcomes(failed=1)
    changed.stdout.fnmatch_lines(["*verdict changed: baseline PASS (estimate 0.5), now FAIL*"])


def test_one_step_verdict_change_fails_on_the_same_numerics(claims_env, monkeypatch):
    claims_env.makepyfile(test_claims=BASELINE_CLAIM)
    claims_env.runpytest("--netclaims-save-baseline", "base.json").assert_outcomes(passed=1)
    monkeypatch.setenv("EFFECT", "0.05")
    stepped = claims_env.runpytest("--netclaims-baseline", "base.json")
    stepped.assert_outcomes(failed=1)
    stepped.stdout.fnmatch_lines(["*verdict changed: baseline PASS (estimate 0.5), now "
                                  "INCONCLUSIVE*"])


def test_baseline_on_the_same_numerics_says_so(claims_env):
    claims_env.makepyfile(test_claims=BASELINE_CLAIM)
    claims_env.runpytest("--netclaims-save-baseline", "base.json")
    same = claims_env.runpytest("--netclaims-baseline", "base.json")
    same.stdout.fnmatch_lines(["baseline: verdicts and estimates compared (recorded on the "
                               "same numerics)"])


def test_recorded_non_replication_passes_against_its_baseline(claims_env, monkeypatch):
    monkeypatch.setenv("EFFECT", "-0.5")
    claims_env.makepyfile(test_claims=BASELINE_CLAIM)
    claims_env.runpytest("--netclaims-save-baseline", "base.json").assert_outcomes(failed=1)
    base = json.loads((claims_env.path / "base.json").read_text())
    assert "FAIL" in base["claims"]["SD-7@-@smoke"]["reason"]
    claims_env.runpytest("--netclaims-baseline", "base.json").assert_outcomes(passed=1)


USER_ARCHS = '''
import torch
from torch import nn

def plain(input_shape, num_classes, width=1.0):
    return nn.Sequential(nn.Flatten(), nn.Linear(40, 16), nn.ReLU(), nn.Linear(16, 16),
                         nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, num_classes))

def staged(input_shape, num_classes, width=1.0):
    model = plain(input_shape, num_classes, width)
    model.netclaims_stages = {"early": ["2"], "late": ["4", "6"]}
    return model

def broken(input_shape, num_classes, width=1.0):
    raise ValueError("cannot build for this input")

def functional(input_shape, num_classes, width=1.0):
    return nn.Linear(40, num_classes)
'''

STAGE_CLAIM = '''
from netclaims import models
from netclaims.claims import claim
from netclaims.stats import Estimate, Rule

@claim("SE-3", finding="stages", rule=Rule("greater"))
def test_stages(arch, train_run):
    run = train_run(arch, epochs=8, width=1.0)
    stages = models.stages_of(run.model)
    print("STAGES", arch.name, stages.groups)
    return Estimate("n", 1.0, 1.0, 1.0, 1)
'''


def test_module_callable_architectures(claims_env):
    claims_env.makepyfile(plugin_nets=USER_ARCHS, test_claims=STAGE_CLAIM)
    claims_env.syspathinsert()
    result = claims_env.runpytest("-s", "--netclaims-arch", "plugin_nets:plain",
                                  "--netclaims-arch", "plugin_nets:staged")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        literal("[netclaims] SE-3 on plugin_nets:plain: training "
                "plugin_nets:plain/mnist1d epochs=8 (8 epochs)"),
        "*[[]netclaims[]] SE-3 on plugin_nets:plain: trained plugin_nets:plain/mnist1d "
        "epochs=8 in *s: test_acc=*",
        "*STAGES plugin_nets:plain (('early', ('2',)), ('intermediate', ('4',)), "
        "('late', ('6',)))*",
        "*STAGES plugin_nets:staged (('early', ('2',)), ('late', ('4', '6')))*",
    ])


def test_summary_counts_the_runs_trained_in_the_session(claims_env):
    claims_env.makepyfile(plugin_nets=USER_ARCHS, test_claims=STAGE_CLAIM)
    claims_env.syspathinsert()
    report_path = claims_env.path / "netclaims-report" / "report.json"
    trained = []
    for line in ("runs: 2 read by the claims, 2 trained in this session (* s of training "
                 "summed over processes)",
                 "runs: 2 read by the claims, 0 trained in this session"):
        result = claims_env.runpytest("--netclaims-arch", "plugin_nets:plain",
                                      "--netclaims-arch", "plugin_nets:staged")
        result.assert_outcomes(passed=2)
        result.stdout.fnmatch_lines([line])
        trained.append(json.loads(report_path.read_text())["provenance"]["training"])
    cold, warm = trained
    assert cold["runs"] == warm["runs"] == 2 and cold["missing"] == warm["missing"] == 0
    assert cold["trained"] == 2 and cold["train_seconds"] > 0
    assert warm["trained"] == 0 and warm["train_seconds"] == 0


def test_failing_factory_and_unit_less_model_give_clear_errors(claims_env):
    claims_env.makepyfile(plugin_nets=USER_ARCHS, test_claims=STAGE_CLAIM)
    claims_env.syspathinsert()
    result = claims_env.runpytest("--netclaims-arch", "plugin_nets:broken",
                                  "--netclaims-arch", "plugin_nets:functional")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: netclaims preflight: architecture plugin_nets:broken: the factory failed*"
        "cannot build for this input*Fix: *",
        "ERROR: netclaims preflight: architecture plugin_nets:functional: no nonlinearity "
        "module runs in its forward pass*Fix: use modules*",
    ])
    assert not (claims_env.path.parent / "store").exists()  # nothing trained


def test_usage_errors(claims_env):
    claims_env.makepyfile(test_claims=BASELINE_CLAIM)
    result = claims_env.runpytest("--netclaims-seeds", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*smoke scale needs at least 3 seeds*"])
    missing = claims_env.runpytest("--netclaims-baseline", "nope.json")
    missing.stderr.fnmatch_lines(["*--netclaims-baseline nope.json*"])
    unknown = claims_env.runpytest("--netclaims-task", "imagenet")
    assert unknown.ret == pytest.ExitCode.USAGE_ERROR
    unknown.stderr.fnmatch_lines(["*--netclaims-task 'imagenet' is not a dataset*digits*"])
    (claims_env.path / "old.json").write_text(json.dumps({"schema": 1, "claims": {}}))
    other = claims_env.runpytest("--netclaims-task", "digits", "--netclaims-baseline",
                                 "old.json")
    assert other.ret == pytest.ExitCode.USAGE_ERROR
    other.stderr.fnmatch_lines(["*old.json was recorded on task 'mnist1d'; this session "
                                "trains on 'digits'*"])


def test_options_settable_in_ini(claims_env):
    claims_env.makeini("[pytest]\nnetclaims_scale = paper\nnetclaims_seeds = 6\n")
    claims_env.makepyfile(test_s='''
def test_settings(scale, seeds, device):
    assert scale == "paper" and seeds == list(range(6)) and device == "auto"
''')
    claims_env.runpytest().assert_outcomes(passed=1)


def test_a_cheap_protocol_takes_more_seeds_unless_the_user_says(claims_env, monkeypatch):
    """A claims module may ask for more seeds than the scale's default (``seeds_for``); the
    scale's default wins where larger, and a number the user gives wins over both."""
    claims_env.makepyfile(test_s='''
import os
import pytest

@pytest.fixture
def seeds(seeds_for):
    return seeds_for({"smoke": 5, "paper": 4})

def test_seeds(seeds):
    assert len(seeds) == int(os.environ["EXPECTED"]) and seeds == sorted(set(seeds))
''')
    for args, expected in (([], 5), (["--netclaims-seeds", "3"], 3),
                           (["--netclaims-seeds", "7"], 7),
                           (["--netclaims-scale", "paper"], 5)):
        monkeypatch.setenv("EXPECTED", str(expected))
        claims_env.runpytest(*args).assert_outcomes(passed=1)


def test_run_spec_resolves_scale_overrides_and_auto_executor(claims_env, monkeypatch):
    claims_env.makepyfile(test_s='''
import os

def test_spec(run_spec, netclaims_settings):
    spec = run_spec("resnet18", seed=2)
    assert (spec.width, spec.depth, spec.epochs, spec.seed) == (0.5, 0.5, 10, 2)
    assert run_spec("resnet18", width=1.0).width == 1.0
    assert run_spec("mlp").epochs == 30 and run_spec("mlp", epochs=3).epochs == 3
    several = (os.cpu_count() or 1) > 1
    expected = os.environ.get("EXPECT") or ("process" if several else "inline")
    assert netclaims_settings.executor == expected
''')
    claims_env.runpytest().assert_outcomes(passed=1)
    monkeypatch.setenv("EXPECT", "inline")
    claims_env.runpytest("--netclaims-device", "cuda").assert_outcomes(passed=1)
    claims_env.runpytest("--netclaims-executor", "inline").assert_outcomes(passed=1)


def test_prefetch_runs_trains_in_the_pool_for_selected_claims_only(claims_env):
    claims_env.makepyfile(test_p='''
from netclaims.claims import NotApplicable, claim
from netclaims.stats import Rule

@claim("SD-1", finding="checks prefetching", rule=Rule("greater"))
def test_prefetching(arch, prefetch_runs, train_runs, run_spec, store, netclaims_settings,
              monkeypatch):
    pooled = netclaims_settings.executor == "process"
    offset = 0 if pooled else 2  # one store for both sessions
    fields = [{"dataset": "digits", "width": 0.25, "epochs": 1, "seed": s + offset}
              for s in (0, 1)]
    keys = {run_spec(arch, **f).key for f in fields}
    prefetch_runs(arch, fields, readers=("SD-1",))
    if not pooled:
        assert not keys & set(store.run_keys())
    runs = train_runs(arch, fields)
    assert {r.spec.key for r in runs} == keys <= set(store.run_keys())
    started = []
    monkeypatch.setattr(store, "prefetch", lambda specs, **_: started.append(specs))
    prefetch_runs(arch, fields, readers=("SD-2",))  # no claim of this session reads it
    assert started == []
    prefetch_runs(arch, fields, readers=("SD-2", "SD-1"))
    assert len(started) == (1 if pooled else 0)
    raise NotApplicable("checks prefetching only")
''')
    for executor in ("process", "inline"):
        claims_env.runpytest("--netclaims-arch", "mlp", "--netclaims-executor",
                             executor).assert_outcomes(skipped=1)


PREFETCH_AND_LEAVE = '''
import time
from pathlib import Path

from netclaims.claims import claim
from netclaims.stats import Estimate, Rule

@claim("SD-1", finding="starts a long zoo it never reads", rule=Rule("greater"))
def test_leaves(arch, prefetch_runs, store):
    prefetch_runs(arch, [{"dataset": "digits", "width": 0.25, "epochs": 3000, "seed": s}
                         for s in range(2)], readers=("SD-1",))
    deadline = time.time() + 120
    while len(list((store.path / "work").iterdir())) < 2 and time.time() < deadline:
        time.sleep(0.05)  # both workers are training
    return Estimate("x", 0.5, 0.4, 0.6, 3, 0.01)
'''

WORKERS_AT_SUMMARY = '''
import os
from pathlib import Path

def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")  # a zombie no longer trains
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")

def pytest_terminal_summary(terminalreporter):
    users = Path(os.environ["NETCLAIMS_STORE"]) / "locks" / "users"
    pids = [int(p.name) for p in users.iterdir() if int(p.name) != os.getpid()]
    alive = [pid for pid in pids if _alive(pid)]
    terminalreporter.write_line(f"workers alive at the summary: {len(alive)} of {len(pids)}")
'''


@pytest.mark.skipif(not Path("/proc").exists(), reason="reads process states from /proc")
def test_no_worker_trains_after_the_summary(claims_env):
    claims_env.makeconftest(PAPERS + WORKERS_AT_SUMMARY)
    claims_env.makepyfile(test_leave=PREFETCH_AND_LEAVE)
    result = claims_env.runpytest_subprocess("--netclaims-arch", "mlp", "--netclaims-executor",
                                             "process")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["workers alive at the summary: 0 of 2"])


def test_session_claims_are_the_selected_claims_and_architectures(claims_env):
    claims_env.makepyfile(test_c='''
from netclaims.claims import NotApplicable, claim
from netclaims.stats import Rule

@claim("SD-1", finding="reads the selection", rule=Rule("greater"))
def test_selection(arch, session_claims):
    assert session_claims == {("SD-1", "mlp"), ("SD-1", "convnet")}
    raise NotApplicable("only checks the selection")

@claim("SD-2", finding="deselected", rule=Rule("greater"))
def test_deselected(arch):
    raise AssertionError("deselected claims do not run")
''')
    result = claims_env.runpytest("--netclaims-arch", "mlp", "--netclaims-arch", "convnet",
                                  "-k", "SD_1")
    result.assert_outcomes(skipped=2, deselected=2)


def test_paper_scale_trains_on_cifar10_from_a_local_folder(claims_env, tmp_path, monkeypatch):
    claims_env.makepyfile(test_s='''
import os

def test_dataset(netclaims_settings, run_spec):
    assert netclaims_settings.dataset == os.environ["EXPECT_DATASET"]
    assert run_spec("mlp").dataset == os.environ["EXPECT_DATASET"]
''')
    root = str(tmp_path)
    for args, expected in ((["--netclaims-scale", "paper", "--netclaims-data-root", root],
                            "cifar10"),
                           (["--netclaims-scale", "paper"], "mnist1d"),
                           (["--netclaims-data-root", root], "mnist1d")):
        monkeypatch.setenv("EXPECT_DATASET", expected)
        claims_env.runpytest(*args).assert_outcomes(passed=1)


XDIST_CLAIMS = '''
import os
from netclaims.claims import claim
from netclaims.stats import Estimate, Rule

def _use(train_run, cid):
    run = train_run("mlp", dataset="digits", width=0.25, epochs=3)
    with open(os.environ["FRESH_LOG"], "a") as f:
        f.write(f"{cid} {run.fresh}\\n")
    return Estimate("x", 1.0, 1.0, 1.0, 1)

@claim("SD-13", finding="a", rule=Rule("greater"))
def test_SD_13(train_run):
    return _use(train_run, "SD-13")

@claim("SD-14", finding="b", rule=Rule("greater"))
def test_SD_14(train_run):
    return _use(train_run, "SD-14")

@claim("SD-16", finding="c", rule=Rule("greater"))
def test_SD_16(train_run):
    return _use(train_run, "SD-16")
'''


def test_xdist_trains_each_shared_run_once(claims_env, tmp_path, monkeypatch):
    pytest.importorskip("xdist")
    log = tmp_path / "fresh.log"
    monkeypatch.setenv("FRESH_LOG", str(log))
    claims_env.makepyfile(test_claims=XDIST_CLAIMS)
    result = claims_env.runpytest_subprocess("-n", "2", "-p", "xdist")
    result.assert_outcomes(passed=3)
    fresh = [line.split()[1] for line in log.read_text().splitlines()]
    assert sorted(fresh) == ["False", "False", "True"]
    report = json.loads((claims_env.path / "netclaims-report" / "report.json").read_text())
    assert len(report["records"]) == 3 and len(report["runs"]) == 1


def test_each_paper_is_a_marker(claims_env):
    claims_env.makepyfile(test_claims=OUTCOMES, test_mine="""
from netclaims.claims import claim, paper
from netclaims.stats import Estimate, Rule

paper("MY", "My lab's findings")

@claim("MY-1", finding="mine", rule=Rule("greater"))
def test_mine():
    return Estimate("d", 1.0, 0.5, 1.5, 3, 0.01)
""")
    result = claims_env.runpytest("--netclaims-arch", "mlp", "-m", "SD", "--co", "-q",
                                  "--strict-markers")
    result.stdout.fnmatch_lines(["*6/8 tests collected (2 deselected)*"])
    assert "test_needs_transformer" not in result.stdout.str()
    mine = claims_env.runpytest("--netclaims-arch", "mlp", "-m", "MY or RD", "--co", "-q")
    mine.stdout.fnmatch_lines(["*test_needs_transformer*", "*test_mine*",
                               "*2/8 tests collected (6 deselected)*"])
    listed = claims_env.runpytest("--markers")
    listed.stdout.fnmatch_lines(["@pytest.mark.SD: the claims of Reliance on single "
                                 "directions*"])
    listed.stdout.fnmatch_lines(["@pytest.mark.zoo: claims that train a zoo*"])


def test_claims_are_marked_by_what_they_train(claims_env):
    claims_env.makepyfile(test_kinds="""
import pytest
from netclaims.claims import claim
from netclaims.stats import Rule

@pytest.fixture
def my_zoo(train_runs):
    return train_runs

@claim("SD-1", finding="a zoo through a fixture", rule=Rule("greater"))
def test_zoo(arch, my_zoo):
    pass

@claim("SD-2", finding="one run", rule=Rule("greater"))
def test_single(arch, train_run):
    pass

@claim("SD-3", finding="nothing trained", rule=Rule("greater"))
def test_none(arch):
    pass
""")
    for marker, name in (("zoo", "test_zoo"), ("single_run", "test_single"),
                         ("no_training", "test_none")):
        result = claims_env.runpytest("--netclaims-arch", "mlp", "-m", marker, "--co", "-q",
                                      "--strict-markers")
        result.stdout.fnmatch_lines([f"*{name}*", "*1/3 tests collected (2 deselected)*"])


def test_the_suite_selects_a_paper_by_its_marker():
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-m", "pytest", "claims/", "-m", "SD", "--co", "-q",
                          "--strict-markers", "-p", "no:cacheprovider"], cwd=root,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    ids = [line for line in out.stdout.splitlines() if "::" in line]
    assert ids and all("test_single_directions.py::test_SD_" in line for line in ids)
    assert len(ids) == 16 * 3  # SD-1 … SD-16 on the three default architectures
