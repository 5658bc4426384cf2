"""Model registry: every architecture builds, declares valid stages and pre-activations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from netclaims import models, units


@pytest.mark.parametrize("name", models.available())
@pytest.mark.parametrize("shape", [(1, 40), (3, 8, 8)])
def test_every_model_declares_stages_and_preactivations(name, shape):
    model = models.create(name, shape, 5).eval()
    x = torch.randn(3, *shape)
    assert model(x).shape == (3, 5)
    stages = models.stages_of(model)
    assert stages.names == ["early", "intermediate", "late"]
    acts = units.collect(model, x, stages.layers)
    assert all(a.shape[0] == 3 and a.min() >= 0 for a in acts.values())
    pre = model.netclaims_preactivations
    assert set(pre) == set(stages.layers)
    pre_acts = units.collect(model, x, sorted(set(pre.values())))
    for layer, source in pre.items():
        assert pre_acts[source].shape[1] == acts[layer].shape[1]


def test_width_depth_batchnorm_dropout():
    small = models.create("mlp", (10,), 3, width=0.5, depth=2 / 3)
    assert small.blocks[0].linear.out_features == 128 and len(small.blocks) == 2
    bn = models.create("convnet", (1, 40), 3, batchnorm=True, dropout=0.2)
    assert isinstance(bn.features[0].bn, nn.BatchNorm1d) and bn.features[0].drop.p == 0.2
    assert models.default_batchnorm("resnet18") and not models.default_batchnorm("mlp")
    wide = models.create("resnet18", (1, 40), 3, width=2.0)
    assert wide.stem.out_channels == 32


@pytest.mark.parametrize(("scheme", "gain"), [("he_normal", 2.0), ("lecun_normal", 1.0)])
def test_init_variance(scheme, gain):
    torch.manual_seed(0)
    model = models.create("mlp", (400,), 3, init=scheme)
    w = model.blocks[1].linear.weight.detach()
    assert float(w.std()) == pytest.approx(math.sqrt(gain / 256), rel=0.05)
    assert torch.all(model.blocks[1].linear.bias == 0)
    glorot = models.create("mlp", (256,), 3, init="glorot_uniform").blocks[1].linear.weight.detach()
    assert float(glorot.abs().max()) <= math.sqrt(6 / 512) + 1e-6


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="available"):
        models.create("alexnet", (1, 40), 10)
    with pytest.raises(ValueError, match="init must be one of"):
        models.create("mlp", (4,), 2, init="orthogonal-ish")
    with pytest.raises(ValueError, match=r"\(channels, length\)"):
        models.create("convnet", (40,), 10)
    with pytest.raises(ValueError, match="num_classes"):
        models.create("mlp", (4,), 1)


def test_stages_of_user_model_without_declaration():
    model = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(4, 4), nn.ReLU())])
    stages = models.stages_of(model)
    assert stages["early"] == ["1", "3"] and stages["late"] == ["9", "11"]
    with pytest.raises(units.UnknownLayerError, match="no nonlinearity"):
        models.stages_of(nn.Linear(3, 3))


USER_MODULE = '''
import torch
from torch import nn

def make_net(input_shape, num_classes, width=1.0):
    hidden = max(1, round(32 * width))
    return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), hidden),
                         nn.ReLU(), nn.Linear(hidden, num_classes))

def broken(input_shape, num_classes, width=1.0):
    raise RuntimeError("boom")

def not_a_module(input_shape, num_classes, width=1.0):
    return 42
'''


def test_user_architecture_by_module_and_callable(tmp_path, monkeypatch):
    (tmp_path / "user_nets.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    model = models.create("user_nets:make_net", (1, 40), 10, width=0.5)
    assert model[1].out_features == 16
    assert models.stages_of(model).layers == ["2"]
    with pytest.raises(models.FactoryError, match=r"user_nets:broken: the factory failed .* boom"):
        models.create("user_nets:broken", (1, 40), 10)
    with pytest.raises(models.FactoryError, match=r"not an nn\.Module"):
        models.create("user_nets:not_a_module", (1, 40), 10)
    with pytest.raises(ValueError, match="cannot import module"):
        models.create("no_such_module_xyz:f", (1, 40), 10)
    with pytest.raises(models.VariantUnavailable, match="takes no 'depth' knob"):
        models.create("user_nets:make_net", (1, 40), 10, depth=2.0)


def test_editing_a_user_architecture_changes_its_run_key(tmp_path, monkeypatch):
    from netclaims.spec import RunSpec

    path = tmp_path / "edited_nets.py"
    path.write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = RunSpec(model="edited_nets:make_net", dataset="digits")
    path.write_text(USER_MODULE.replace("32 * width", "64 * width"))
    import importlib
    import sys
    importlib.reload(sys.modules["edited_nets"])
    after = RunSpec(model="edited_nets:make_net", dataset="digits")
    assert before.model_source != after.model_source and before.key != after.key


@pytest.mark.parametrize("depth", [0.5, 1.0])
def test_resnet_block_outputs_are_what_the_next_block_reads(depth):
    """A pre-activation block's output is read, as non-negative units, by the next block's
    first BN-ReLU; the last block's by the final BN-ReLU. Recorded activations equal that
    function of the block outputs, and every block is read exactly once, in depth order."""
    torch.manual_seed(0)
    model = models.create("resnet18", (1, 40), 10, width=0.5, depth=depth).eval()
    blocks = models.block_outputs_of(model)
    assert blocks.names == ["early", "intermediate", "late"]
    per_stage = round(2 * depth)
    assert [len(layers) for _, layers in blocks.groups] == [per_stage, 2 * per_stage,
                                                            per_stage]
    x = torch.randn(6, 1, 40)
    outputs, h = [], model.stem(x)
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in layer:
            h = block(h)
            outputs.append(h)
    readers = [block for layer in (model.layer1, model.layer2, model.layer3, model.layer4)
               for block in layer][1:]
    expected = [b.relu1(b.bn1(out)) for b, out in zip(readers, outputs, strict=False)]
    expected.append(model.final_relu(model.final_bn(outputs[-1])))
    recorded = units.collect(model, x, blocks.layers, reduce="none")
    for name, want in zip(blocks.layers, expected, strict=True):
        assert torch.equal(recorded[name], want), name
        assert bool((recorded[name] >= 0).all())


def test_a_plain_net_reads_its_unit_layers_as_block_outputs():
    model = models.create("convnet", (1, 40), 10)
    assert models.block_outputs_of(model) == models.stages_of(model)


def test_the_selectivity_regularizer_reads_block_outputs_when_asked():
    from netclaims.regularizers import REGULARIZERS

    layers_of, _ = REGULARIZERS["selectivity"]
    model = models.create("resnet18", (1, 40), 10, width=0.5, depth=0.5)
    wanted = {"stages": ["early", "intermediate"]}
    assert layers_of(model, {**wanted, "units": "block outputs"}) == \
        ["layer2.0.relu1", "layer3.0.relu1", "layer4.0.relu1"]
    assert layers_of(model, wanted) == models.stages_of(model).layers[:6]
    with pytest.raises(ValueError, match="units must be 'stages' or 'block outputs'"):
        layers_of(model, {"units": "blocks"})
