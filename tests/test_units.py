"""Unit addressing: selection, stages, recording, streaming, interventions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from netclaims import units
from netclaims.units import (
    ClassMeans,
    Intervention,
    Moments,
    PerLayer,
    Recorder,
    Stages,
    UnknownLayerError,
    ablation,
    collect,
    intervene,
    intervened_outputs,
    interventions,
    noise,
    select_layers,
    stream,
)


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# ----------------------------------------------------------------- selection


def test_auto_selects_nonlinearity_outputs_in_order(conv_model):
    assert select_layers(conv_model) == ["features.1", "features.3", "fc_relu"]


def test_select_by_exact_name_glob_and_type(conv_model):
    assert select_layers(conv_model, "fc") == ["fc"]
    assert select_layers(conv_model, "features.*") == [f"features.{i}" for i in range(4)]
    assert select_layers(conv_model, nn.Conv1d) == ["features.0", "features.2"]
    assert select_layers(conv_model, ["fc_relu", nn.Conv1d]) == [
        "features.0", "features.2", "fc_relu"]


def test_unknown_name_lists_valid_names(conv_model):
    with pytest.raises(UnknownLayerError) as err:
        select_layers(conv_model, "fc_rleu")
    message = str(err.value)
    assert "fc_rleu" in message and "fc_relu" in message and "features.0" in message


def test_unmatched_glob_and_type_raise(conv_model):
    with pytest.raises(UnknownLayerError, match="matches no layer"):
        select_layers(conv_model, "decoder.*")
    with pytest.raises(UnknownLayerError, match="BatchNorm1d"):
        select_layers(conv_model, nn.BatchNorm1d)


def test_auto_on_functional_model_gives_clear_error():
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x):
            return torch.relu(self.lin(x))

    with pytest.raises(UnknownLayerError, match="no nonlinearity modules"):
        select_layers(Functional())


def test_stages_by_depth_and_from_mapping(conv_model):
    stages = Stages.by_depth(["a", "b", "c", "d", "e", "f"])
    assert stages.names == ["early", "intermediate", "late"]
    assert stages["early"] == ["a", "b"] and stages["late"] == ["e", "f"]
    assert stages.stage_of("d") == "intermediate" and stages.depth("late") == 2
    mapped = Stages.from_mapping({"early": ["features.1"], "late": ["fc_relu"]}, conv_model)
    assert mapped.layers == ["features.1", "fc_relu"]
    with pytest.raises(UnknownLayerError):
        Stages.from_mapping({"early": ["nope"]}, conv_model)
    with pytest.raises(ValueError, match="more than one stage"):
        Stages((("a", ("x",)), ("b", ("x",))))


def test_execution_order_follows_forward(conv_model):
    order = units.execution_order(conv_model, ["fc_relu", "features.1"], torch.randn(2, 1, 20))
    assert order == ["features.1", "fc_relu"]


# ----------------------------------------------------------------- recording


def test_one_pass_records_every_layer_with_reductions(conv_model):
    x = torch.randn(10, 1, 20)
    with Recorder(conv_model, ["features.1", "fc_relu"], reduce="none") as rec:
        conv_model(x)
    full = rec.activations
    assert full["features.1"].shape == (10, 8, 20) and full["fc_relu"].shape == (10, 16)
    means = collect(conv_model, x, ["features.1"], reduce="mean")["features.1"]
    maxes = collect(conv_model, x, ["features.1"], reduce="max")["features.1"]
    torch.testing.assert_close(means, full["features.1"].mean(-1))
    torch.testing.assert_close(maxes, full["features.1"].amax(-1))


def test_recorded_activations_match_manual_forward(mlp_model):
    x = torch.randn(33, 6)
    got = collect(mlp_model, x, ["1", "3"], batch_size=8)
    h1 = torch.relu(mlp_model[0](x))
    h2 = torch.relu(mlp_model[2](h1))
    torch.testing.assert_close(got["1"], h1)
    torch.testing.assert_close(got["3"], h2)


def test_module_called_twice_records_both_calls(shared_relu_model):
    x = torch.randn(4, 5)
    got = collect(shared_relu_model, x, ["act"])
    m = shared_relu_model
    first = torch.relu(m.a(x))
    torch.testing.assert_close(got["act#0"], first)
    torch.testing.assert_close(got["act#1"], torch.relu(m.b(first)))
    only_second = collect(shared_relu_model, x, ["act#1"])
    assert list(only_second) == ["act#1"]


def test_hooks_removed_even_when_forward_raises(mlp_model):
    before = _hooks(mlp_model)
    with pytest.raises(RuntimeError), Recorder(mlp_model, ["1"]):
        mlp_model(torch.randn(2, 99))
    assert _hooks(mlp_model) == before
    with pytest.raises(RuntimeError), intervene(mlp_model, {"1": ablation(16, [0])}):
        mlp_model(torch.randn(2, 99))
    assert _hooks(mlp_model) == before


def test_eval_mode_restored(mlp_model):
    mlp_model.train()
    mlp_model[1].eval()
    collect(mlp_model, torch.randn(3, 6), ["1"])
    assert mlp_model.training and not mlp_model[1].training and mlp_model[0].training


def test_unit_axis_attribute_for_channels_last():
    act = nn.ReLU()
    act.netclaims_unit_axis = -1
    model = nn.Sequential(nn.Linear(4, 5), act)
    x = torch.randn(3, 7, 4)
    got = collect(model, x, ["1"])["1"]
    torch.testing.assert_close(got, torch.relu(model[0](x)).mean(1))


# ----------------------------------------------------------------- streaming


def test_streaming_class_means_and_moments_equal_full_batch(conv_model):
    x, y = torch.randn(70, 1, 20), torch.randint(0, 4, (70,))
    layers = ["features.3", "fc_relu"]
    sink = stream(conv_model, (x, y), layers, PerLayer(lambda: ClassMeans(4)), batch_size=16)
    full = collect(conv_model, x, layers)
    for layer in layers:
        expected = torch.stack([full[layer][y == c].double().mean(0) for c in range(4)])
        torch.testing.assert_close(sink[layer].means, expected)
    moments = stream(conv_model, (x, y), layers, PerLayer(Moments), reduce="none",
                     batch_size=9)
    conv = collect(conv_model, x, ["features.3"], reduce="none")["features.3"]
    per_channel = conv.transpose(0, 1).reshape(8, -1).double()
    torch.testing.assert_close(moments["features.3"].mean, per_channel.mean(1))
    torch.testing.assert_close(moments["features.3"].var, per_channel.var(1, correction=0))


def test_streaming_state_does_not_grow_with_samples(mlp_model):
    sizes = []
    for n in (50, 500):
        x, y = torch.randn(n, 6), torch.randint(0, 3, (n,))
        sink = stream(mlp_model, (x, y), ["1"], PerLayer(lambda: ClassMeans(3)), batch_size=10)
        acc = sink["1"]
        sizes.append(acc.sums.numel() + acc.counts.numel())
    assert sizes[0] == sizes[1]


def test_class_means_rejects_bad_labels():
    acc = ClassMeans(2)
    with pytest.raises(ValueError, match="num_classes=2"):
        acc.update(torch.ones(3, 2), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="needs labels"):
        acc.update(torch.ones(3, 2), None)


# ----------------------------------------------------------------- interventions


def test_no_ablation_reproduces_outputs_exactly(conv_model):
    x = torch.randn(9, 1, 20)
    expected = conv_model(x)
    with intervene(conv_model, {"fc_relu": ablation(16, [])}):
        got = conv_model(x)
    assert torch.equal(got, expected)


def test_outputs_bit_identical_after_context(conv_model):
    x = torch.randn(9, 1, 20)
    before = conv_model(x)
    keep = torch.rand(5, 16) > 0.5
    intervened_outputs(conv_model, x, {"fc_relu": ablation(16, keep)})
    with intervene(conv_model, {"features.1": noise(torch.ones(8))}):
        conv_model(x)
    assert torch.equal(conv_model(x), before)
    assert _hooks(conv_model) == 0


def test_ablating_every_unit_removes_dependence_on_input(conv_model):
    x1, x2 = torch.randn(6, 1, 20), torch.randn(6, 1, 20)
    with intervene(conv_model, {"fc_relu": ablation(16, list(range(16)))}):
        a, b = conv_model(x1), conv_model(x2)
    torch.testing.assert_close(a, b)


def test_fill_clamps_to_given_values(mlp_model):
    fill = torch.arange(16, dtype=torch.float32)
    x = torch.randn(4, 6)
    # hooks run in registration order: the recorder entered second sees the clamped output
    with intervene(mlp_model, {"1": ablation(16, [2, 5], fill=fill)}), Recorder(
            mlp_model, ["1"]) as rec:
        mlp_model(x)
    got = rec.activations["1"]
    assert torch.all(got[:, 2] == 2.0) and torch.all(got[:, 5] == 5.0)
    torch.testing.assert_close(got[:, 0], torch.relu(mlp_model[0](x))[:, 0])


@pytest.mark.parametrize("model_name", ["conv_model", "mlp_model", "residual_model"])
def test_batched_masks_equal_sequential(model_name, request):
    model = request.getfixturevalue(model_name)
    layer = units.select_layers(model)[-1]
    x = torch.randn(12, 1, 20) if model_name == "conv_model" else torch.randn(12, 6)
    n_units = units.unit_counts(model, [layer], x)[layer]
    gen = torch.Generator().manual_seed(0)
    keep = torch.rand(7, n_units, generator=gen) > 0.4
    iv = {layer: ablation(n_units, keep)}
    auto = intervened_outputs(model, x, iv, mask_chunk=3, batch_size=5)
    seq = intervened_outputs(model, x, iv, strategy="sequential", batch_size=5)
    assert auto.shape == (7, 12, seq.shape[-1])
    torch.testing.assert_close(auto, seq, rtol=1e-5, atol=1e-6)


def test_skip_connection_detected_and_input_replicated_instead(residual_model):
    x = torch.randn(8, 6)
    iv = {"relu": ablation(12, torch.rand(4, 12) > 0.5)}
    with pytest.raises(RuntimeError):
        intervened_outputs(residual_model, x, iv, strategy="batched")
    assert not interventions._batching_is_exact(residual_model, x, iv)
    # the skip connection carries the unreplicated batch: replicating the input works
    assert interventions._choose_strategy(residual_model, x, iv) == "batched_input"
    torch.testing.assert_close(
        intervened_outputs(residual_model, x, iv, strategy="batched_input"),
        intervened_outputs(residual_model, x, iv, strategy="sequential"), rtol=1e-5, atol=1e-6)
    plain = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    assert interventions._choose_strategy(plain, x, {"1": ablation(4, torch.rand(3, 4) > 0.5)}) \
        == "batched"
    assert interventions._choose_strategy(plain, x, {"1": ablation(4, [0])}) == "sequential"


def test_noise_alone_is_probed_with_all_its_masks(residual_model):
    """The probe drops the noise but keeps the masks, so a skip connection is seen."""
    x = torch.randn(8, 6)
    iv = {"relu": noise(torch.full((4, 12), 0.5))}
    assert interventions._choose_strategy(residual_model, x, iv) == "batched_input"
    out = intervened_outputs(residual_model, x, iv, generator=torch.Generator().manual_seed(0))
    assert out.shape == (4, 8, residual_model(x).shape[-1])


def test_batching_falls_back_to_sequential_when_no_batched_path_is_exact():
    class PerBatch(nn.Module):  # normalizes over the batch: rows are not independent
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.act = nn.Linear(6, 4), nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.act(self.fc(x))
            return h - h.mean(0, keepdim=True)

    model, x = PerBatch().eval(), torch.randn(8, 6)
    iv = {"act": ablation(4, torch.tensor([[True, False, False, False],
                                           [False, False, True, True]]))}
    assert interventions._choose_strategy(model, x, iv) == "sequential"


def test_noise_is_seeded_and_scaled(mlp_model):
    x = torch.randn(20, 6)
    iv = {"3": noise(torch.full((2, 12), 0.5))}
    a = intervened_outputs(mlp_model, x, iv, generator=torch.Generator().manual_seed(5))
    b = intervened_outputs(mlp_model, x, iv, generator=torch.Generator().manual_seed(5))
    c = intervened_outputs(mlp_model, x, iv, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    zero = intervened_outputs(mlp_model, x, {"3": noise(torch.zeros(12))})
    torch.testing.assert_close(zero[0], mlp_model(x))


def test_intervention_shape_errors():
    with pytest.raises(ValueError, match=r"shape \(masks, 4\)"):
        Intervention(4, keep=torch.ones(2, 5))
    with pytest.raises(ValueError, match="disagree"):
        Intervention(4, keep=torch.ones(2, 4), noise_std=torch.ones(3, 4))
    with pytest.raises(ValueError, match=r"0\.\.3"):
        ablation(4, [4])
    with pytest.raises(ValueError, match="NaN"):
        Intervention(2, fill=torch.tensor([0.0, float("nan")]))


def test_intervention_unit_count_mismatch(mlp_model):
    with pytest.raises(ValueError, match=r"has 16 units"), intervene(
            mlp_model, {"1": ablation(5, [0])}):
        mlp_model(torch.randn(2, 6))


def test_streaming_recorder_retains_nothing(mlp_model):
    with Recorder(mlp_model, ["1"], keep=False) as rec:
        mlp_model(torch.randn(3, 6))
        assert set(rec.pop_batch()) == {"1"}
    with pytest.raises(ValueError, match="keep=False"):
        _ = rec.activations


def test_incoming_layer_found_by_execution_order(conv_model, mlp_model):
    x = torch.randn(2, 1, 20)
    assert units.incoming_layer(conv_model, "features.3", x) == "features.2"
    assert units.incoming_layer(conv_model, "fc_relu", x) == "fc"
    assert units.incoming_layer(mlp_model, "3", torch.randn(2, 6)) == "2"
    with pytest.raises(UnknownLayerError):
        units.incoming_layer(mlp_model, "nope", torch.randn(2, 6))


def test_per_position_ablation_knocks_out_single_positions(conv_model):
    x = torch.randn(5, 1, 20)
    layer = "features.1"
    counts = units.unit_counts(conv_model, [layer], x, per_position=True)
    assert counts == {layer: 8 * 20}
    keep = torch.ones(8 * 20)
    keep[3 * 20 + 7] = 0.0  # channel 3, position 7
    iv = Intervention(8 * 20, keep=keep, per_position=True)
    with intervene(conv_model, {layer: iv}), Recorder(conv_model, [layer], reduce="none") as rec:
        conv_model(x)
    got = rec.activations[layer]
    assert torch.all(got[:, 3, 7] == 0)
    expected = torch.relu(conv_model.features[0](x))
    torch.testing.assert_close(got[:, 3, 8], expected[:, 3, 8])
    torch.testing.assert_close(got[:, 2, 7], expected[:, 2, 7])


def test_per_position_ablation_of_every_position_equals_channel_ablation(conv_model):
    x = torch.randn(6, 1, 20)
    channels = torch.zeros(2, 8, dtype=torch.bool)
    channels[0, [1, 4]] = True
    channels[1] = True
    positions = channels.repeat_interleave(20, dim=1)
    by_channel = intervened_outputs(conv_model, x, {"features.1": ablation(8, channels)})
    by_position = intervened_outputs(conv_model, x, {"features.1": Intervention(
        160, keep=(~positions).float(), per_position=True)})
    torch.testing.assert_close(by_position, by_channel)


def test_per_position_intervention_checks_the_element_count(conv_model):
    iv = Intervention(8, keep=torch.ones(8), per_position=True)
    with pytest.raises(ValueError, match="160 units"), intervene(conv_model,
                                                                 {"features.1": iv}):
        conv_model(torch.randn(2, 1, 20))
