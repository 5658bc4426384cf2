"""Users' architectures: knobs, generic variants, preflight, unit addressing, run keys, and
claims of one's own."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from netclaims import data, models
from netclaims.models.user import source_digest
from netclaims.preflight import PreflightError, preflight
from netclaims.spec import RunSpec
from netclaims.units import collect

pytest_plugins = ["pytester"]

EXAMPLES = "examples.architectures"


@pytest.fixture(scope="module")
def mnist1d():
    return data.load("mnist1d")


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def test_the_five_examples_pass_preflight_with_what_they_offer(mnist1d, digits):
    expected = {
        "conv1d_bn": (mnist1d, {"batchnorm", "conv", "nonnegative_units"},
                      {"width", "depth", "feature_vectors"}),
        "mlp_dropout": (mnist1d, {"feature_vectors"}, {"batchnorm", "width", "conv"}),
        "cnn2d": (digits, {"width", "conv"}, {"batchnorm", "depth"}),
        "basicblock_resnet": (digits, {"batchnorm", "conv"}, {"width", "depth"}),
        "small_vit": (digits, {"transformer"},  # GELU units dip below zero
                      {"batchnorm", "width", "three_stages", "nonnegative_units"}),
    }
    for name, (task, has, lacks) in expected.items():
        arch = preflight(f"{EXAMPLES}:{name}", task)
        assert has <= arch.capabilities and not lacks & arch.capabilities, name
        assert "stages" in arch.capabilities and arch.layers
        for capability in lacks:
            assert arch.why_not(frozenset({capability})), (name, capability)


def test_a_reused_relu_is_addressed_per_call(digits):
    arch = preflight(f"{EXAMPLES}:basicblock_resnet", digits)
    names = [layer.name for layer in arch.layers]
    assert names == ["stem.2", "layer1.relu#0", "layer1.relu#1", "layer2.relu#0",
                     "layer2.relu#1"]
    model = models.create(f"{EXAMPLES}:basicblock_resnet", (1, 8, 8), 10)
    acts = collect(model, digits.x_test[:5], names)
    assert acts["layer1.relu#0"].shape == (5, 16) and acts["layer2.relu#1"].shape == (5, 32)
    # the two calls see different tensors: the block's input to conv2 and its output
    assert not torch.equal(acts["layer1.relu#0"], acts["layer1.relu#1"])


def test_token_activations_are_measured_over_features(digits):
    model = models.create(f"{EXAMPLES}:small_vit", (1, 8, 8), 10)
    layers = models.stages_of(model).layers
    assert layers == ["blocks.0.mlp.1", "blocks.1.mlp.1"]
    acts = collect(model, digits.x_test[:3], layers)
    assert acts["blocks.0.mlp.1"].shape == (3, 64)  # 2 x 32 hidden features, not 16 tokens
    gelu = dict(model.named_modules())["blocks.0.mlp.1"]
    gelu.netclaims_unit_axis = 1  # a user's override wins
    assert collect(model, digits.x_test[:3], layers[:1])[layers[0]].shape == (3, 16)


def test_without_batchnorm_replaces_batchnorm_by_identities():
    bn = models.create(f"{EXAMPLES}:conv1d_bn", (1, 40), 10, batchnorm=True)
    plain = models.create(f"{EXAMPLES}:conv1d_bn", (1, 40), 10, batchnorm=False)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in bn.modules()) == 2
    assert not any(isinstance(m, nn.BatchNorm1d) for m in plain.modules())
    assert sum(isinstance(m, nn.Identity) for m in plain.modules()) == 2
    with pytest.raises(models.VariantUnavailable, match="no batch norm and no 'batchnorm' knob"):
        models.create(f"{EXAMPLES}:mlp_dropout", (1, 40), 10, batchnorm=True)


def test_dropout_without_a_knob_acts_on_unit_layers_while_training():
    torch.manual_seed(0)
    model = models.create(f"{EXAMPLES}:cnn2d", (1, 8, 8), 10, dropout=0.5)
    for layer in models.stages_of(model).layers:
        relu = dict(model.named_modules())[layer]
        with torch.no_grad():
            out = relu.train()(torch.ones(1000))
            assert 0.4 < float((out == 0).double().mean()) < 0.6
            assert set(out.unique().tolist()) == {0.0, 2.0}  # inverted dropout
            assert torch.equal(relu.eval()(torch.ones(10)), torch.ones(10))
    plain = models.create(f"{EXAMPLES}:cnn2d", (1, 8, 8), 10)
    relu = dict(plain.named_modules())[models.stages_of(plain).layers[0]]
    assert torch.equal(relu.train()(torch.ones(10)), torch.ones(10))


def test_knobs_are_passed_only_when_declared(tmp_path, monkeypatch):
    (tmp_path / "knobbed.py").write_text(
        "from torch import nn\n"
        "seen = []\n"
        "def make(input_shape, num_classes, **knobs):\n"
        "    seen.append(knobs)\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(40, 8), nn.ReLU(),\n"
        "                         nn.Linear(8, num_classes))\n"
        "def fixed(input_shape, num_classes):\n"
        "    return make(input_shape, num_classes)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    models.create("knobbed:make", (1, 40), 10, width=2.0, depth=3.0, dropout=0.1)
    models.create("knobbed:fixed", (1, 40), 10)
    seen = sys.modules["knobbed"].seen
    assert seen[0] == {"width": 2.0, "depth": 3.0, "dropout": 0.1} and seen[1] == {}
    with pytest.raises(models.VariantUnavailable, match="takes no 'width' knob"):
        models.create("knobbed:fixed", (1, 40), 10, width=2.0)


HELPER = "from torch import nn\n\ndef activation():\n    return nn.ReLU()\n"
FACTORY = ("from torch import nn\nfrom helpers_x import activation\n\n"
           "def make(input_shape, num_classes):\n"
           "    return nn.Sequential(nn.Flatten(), nn.Linear(40, 8), activation(),\n"
           "                         nn.Linear(8, num_classes))\n")


def test_editing_a_helper_module_the_factory_imports_changes_the_run_key(tmp_path,
                                                                         monkeypatch):
    (tmp_path / "helpers_x.py").write_text(HELPER)
    (tmp_path / "nets_x.py").write_text(FACTORY)
    (tmp_path / "unrelated_x.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("unrelated_x")
    key = RunSpec(model="nets_x:make", dataset="mnist1d").key
    assert RunSpec(model="nets_x:make", dataset="mnist1d").key == key  # unchanged: same run
    (tmp_path / "unrelated_x.py").write_text("X = 2\n")
    assert RunSpec(model="nets_x:make", dataset="mnist1d").key == key  # not its code
    (tmp_path / "helpers_x.py").write_text(HELPER.replace("ReLU", "Tanh"))
    importlib.reload(sys.modules["helpers_x"])
    edited = RunSpec(model="nets_x:make", dataset="mnist1d")
    assert edited.key != key
    assert source_digest("nets_x:make") == edited.model_source


def test_preflight_names_each_misfit(mnist1d, tmp_path, monkeypatch):
    (tmp_path / "misfits.py").write_text(
        "from torch import nn\nfrom torch.nn import functional as F\n"
        "def wrong_outputs(input_shape, num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(40, 8), nn.ReLU(), nn.Linear(8, 3))\n"
        "class Functional(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.a, self.b = nn.Linear(40, 8), nn.Linear(8, 10)\n"
        "    def forward(self, x):\n"
        "        return self.b(F.relu(self.a(x.flatten(1))))\n"
        "def functional(input_shape, num_classes):\n"
        "    return Functional()\n"
        "def images_only(input_shape, num_classes):\n"
        "    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(),\n"
        "                         nn.LazyLinear(num_classes))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = {"wrong_outputs": r"its output has shape \(8, 3\).*needs \(8, 10\).*Fix: end the net "
                              "with 10 outputs",
             "functional": r"no nonlinearity module runs.*Fix: use modules",
             "images_only": r"a forward pass on a batch of shape \(2, 1, 40\) failed.*Fix: the "
                            r"factory receives input_shape=\(1, 40\)"}
    for name, message in cases.items():
        with pytest.raises(PreflightError, match=f"architecture misfits:{name}: {message}"):
            preflight(f"misfits:{name}", mnist1d)


OWN_CLAIM = '''
import pytest

from netclaims.claims import claim, paper
from netclaims.stats import Estimate, Rule

paper("MY", "My lab's findings")


@claim("MY-1", finding="wider nets are more accurate", rule=Rule("greater"),
       requires=["stages"])
def test_wider_is_better(arch):
    return Estimate("acc(wide) - acc(narrow)", 0.04, 0.01, 0.07, 3, 0.01)


@pytest.fixture
def bn_runs(arch, train_run):
    return [train_run(arch, batchnorm=True, epochs=1)]


@claim("MY-2", finding="needs batch norm", rule=Rule("greater"), requires=["batchnorm"])
def test_needs_batchnorm(arch, bn_runs):
    raise AssertionError("must not run without batch norm")
'''


def _readme_claim() -> str:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Writing a claim", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_claim_runs_in_twenty_lines(pytester, tmp_path, monkeypatch):
    """README's "Writing a claim" example, as printed, on a registry MLP and on a user net
    without a width knob (N/A, nothing trained for it)."""
    code = _readme_claim()
    assert len(code.strip().splitlines()) <= 20
    monkeypatch.setenv("NETCLAIMS_STORE", str(tmp_path / "store"))
    pytester.makepyfile(test_mine=code)
    pytester.syspathinsert(Path(__file__).parents[1])
    result = pytester.runpytest("--netclaims-task", "digits", "--netclaims-arch", "mlp",
                                "--netclaims-arch", f"{EXAMPLES}:basicblock_resnet",
                                "-k", "MY-1")
    report = json.loads((pytester.path / "netclaims-report" / "report.json").read_text())
    records = {r["arch"]: r for r in report["records"]}
    mlp, resnet = records["mlp"], records[f"{EXAMPLES}:basicblock_resnet"]
    assert mlp["verdict"] in ("PASS", "FAIL", "INCONCLUSIVE"), mlp["message"]
    assert mlp["statistic"] == "SI(2x) - SI(1/2x), last layer" and mlp["n"] == 3
    assert mlp["ci_low"] <= mlp["estimate"] <= mlp["ci_high"]
    assert mlp["threshold"] == "CI < 0" and mlp["paper_title"] == "My lab's findings"
    assert len(mlp["runs"]) == 6
    assert resnet["verdict"] == "N/A" and "needs a 'width' knob" in resnet["message"]
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)


def test_a_claim_of_ones_own_paper_runs_and_is_reported(pytester, tmp_path, monkeypatch):
    monkeypatch.setenv("NETCLAIMS_STORE", str(tmp_path / "store"))
    pytester.makepyfile(test_mine=OWN_CLAIM)
    result = pytester.runpytest("--netclaims-arch", f"{EXAMPLES}:mlp_dropout")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["MY: My lab's findings", "*MY-1*mlp_dropout*PASS*"])
    folder = pytester.path / "netclaims-report"
    report = json.loads((folder / "report.json").read_text())
    records = {r["id"]: r for r in report["records"]}
    assert records["MY-1"]["verdict"] == "PASS" and records["MY-2"]["verdict"] == "N/A"
    assert records["MY-2"]["message"].startswith("not applicable: MY-2 needs a variant with "
                                                 "batch norm")
    assert "the net has no BatchNorm layers" in records["MY-2"]["message"]
    assert records["MY-1"]["paper_title"] == "My lab's findings"
    assert not list((tmp_path / "store").rglob("*.safetensors"))  # N/A before any training
    for name in ("report.md", "report.html"):
        text = (folder / name).read_text()
        assert "My lab&#x27;s findings" in text or "My lab's findings" in text
        assert "MY-1" in text and "MY-2" in text


def test_a_single_call_of_a_reused_module_is_named_as_asked(digits):
    from netclaims.units import unit_counts

    model = models.create(f"{EXAMPLES}:basicblock_resnet", (1, 8, 8), 10)
    x = digits.x_test[:4]
    assert unit_counts(model, ["layer1.relu#0", "layer2.relu#1"], x) == {
        "layer1.relu#0": 16, "layer2.relu#1": 32}
    assert set(collect(model, x, ["layer1.relu#1"])) == {"layer1.relu#1"}


def test_the_selectivity_regularizer_trains_on_per_call_layers(tmp_path):
    from netclaims.store import Store

    spec = RunSpec(model=f"{EXAMPLES}:basicblock_resnet", dataset="digits", epochs=1,
                   dataset_options={"train_size": 100}, evaluate="checkpoints",
                   regularizers=[{"name": "selectivity", "alpha": 1.0}])
    run = Store(tmp_path).run(spec, device="cpu")
    assert run.history["epoch"].iloc[-1] == 1
