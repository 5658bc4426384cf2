"""The paper-scale path on CPU: a generated folder in the CIFAR archives' format drives the
built-in claims at paper scale, one claim per paper, with every run cut to 2 epochs
(``--netclaims-override``), so data, models, training, claims and report are exercised end to
end without a GPU. The verdicts of 2-epoch runs are not evidence; the test asserts that each
claim reaches a verdict on the data it should read, not which verdict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]

SELECTIONS = [
    # (claims, extra options): the intraclass-clustering zoo has 108 models at paper scale, so
    # its nets are also narrowed (every run, hence its own session)
    ("SD_1_ or FU_1_ or RD_1_ or SE_8_", []),
    ("IC_6_", ["--netclaims-override", "width=0.25"]),
]


@pytest.mark.parametrize(("selection", "options"), SELECTIONS)
def test_paper_scale_runs_on_a_cifar_folder(tmp_path, cifar_root, selection, options):
    data = cifar_root("cifar10")
    cifar_root("cifar100")
    env = {**os.environ, "NETCLAIMS_STORE": str(tmp_path / "store")}
    report = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "claims"), "-k", selection,
         "--netclaims-scale", "paper", "--netclaims-data-root", str(data),
         "--netclaims-arch", "mlp", "--netclaims-allow-long",
         "--netclaims-override", "epochs=2", *options, "--netclaims-report", str(report),
         "-p", "no:cacheprovider", "-q"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode in (0, 1), result.stdout[-3000:] + result.stderr[-3000:]
    # the report's header says these verdicts are no evidence
    header = (report / "report.md").read_text().splitlines()[2]
    assert "every run with epochs=2" in header and header.endswith("not evidence")
    records = json.loads((report / "report.json").read_text())
    verdicts = {r["id"]: r["verdict"] for r in records["records"]}
    wanted = {part.strip().rstrip("_").replace("_", "-") for part in selection.split(" or ")}
    assert set(verdicts) == wanted
    assert "ERROR" not in verdicts.values(), records["records"]
    prov = records["provenance"]
    assert prov["scale"] == "paper" and prov["task"] == "cifar10"
    assert prov["overrides"]["epochs"] == 2
    manifests = [json.loads(p.read_text()) for p in (tmp_path / "store" / "runs").glob(
        "*/manifest.json")]
    datasets = {m["spec"]["dataset"] for m in manifests}
    # the IC zoo reads CIFAR-100's coarse classes (the paper's task); the others CIFAR-10
    assert datasets == ({"cifar100"} if selection == "IC_6_" else {"cifar10"})
    assert {m["spec"]["epochs"] for m in manifests} == {2}
