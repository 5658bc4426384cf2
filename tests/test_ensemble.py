"""Ensemble training: a condition's seeds trained together as one batched model land in the
store as ordinary runs, each equal to its run trained alone up to floating point."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from netclaims.ensemble import group_key, groups, train_ensemble
from netclaims.regularizers import Regularizer
from netclaims.spec import RunSpec
from netclaims.store import Store
from netclaims.train import train


def _spec(seed: int, **fields) -> RunSpec:
    return RunSpec(**{"model": "mlp", "dataset": "digits", "width": 0.25, "epochs": 2,
                      "seed": seed, **fields})


def test_only_seeds_of_one_condition_train_together():
    specs = [_spec(0), _spec(1), _spec(2, width=0.5), _spec(3, augmentation="auto"),
             _spec(4, regularizers=(Regularizer("selectivity", -1.0),)),
             _spec(5, checkpoint_steps=[3]), _spec(6)]
    together, alone = groups(specs)
    assert together == [[specs[0], specs[1], specs[6]]]
    assert alone == specs[2:6]
    assert group_key(specs[3]) is None and group_key(_spec(0)) == group_key(_spec(9))


def _logits(spec: RunSpec, folder, data) -> torch.Tensor:
    model = spec.build_model(data)
    model.load_state_dict(load_file(folder / "model.safetensors"))
    with torch.no_grad():
        return model.eval()(data.x_test)


@pytest.mark.parametrize("fields", [{}, {"model": "convnet", "batchnorm": True}])
def test_members_equal_their_runs_trained_alone(tmp_path, fields):
    """Same history, steps and checkpoints; the same function up to floating point. With
    batch norm, only the same predictions nearly everywhere: a bias before batch norm has
    no gradient but rounding noise, which Adam scales to full steps, so such biases and the
    running means that follow them drift apart between any two float orders."""
    specs = [_spec(s, checkpoint_epochs=[1], epochs=5, **fields) for s in range(3)]
    data = specs[0].load_data()
    states = train_ensemble(specs, [tmp_path / f"e{s.seed}" for s in specs], device="cpu")
    for spec, state in zip(specs, states, strict=True):
        alone = train(spec, tmp_path / f"a{spec.seed}", device="cpu")
        assert [r["epoch"] for r in state.history] == [r["epoch"] for r in alone.history]
        assert state.step == alone.step
        assert abs(state.history[-1]["test_acc"] - alone.history[-1]["test_acc"]) <= 0.005
        assert (tmp_path / f"e{spec.seed}" / "checkpoints" / "epoch_0001.safetensors").exists()
        ours, theirs = (_logits(spec, tmp_path / f"{w}{spec.seed}", data) for w in "ea")
        if not fields:
            torch.testing.assert_close(ours, theirs, atol=2e-3, rtol=0)
        else:  # the same predictions, nearly everywhere
            assert (ours.argmax(1) == theirs.argmax(1)).double().mean() >= 0.95
        if fields:  # batch-norm statistics are each member's own (variance: shift-free)
            var = "features.0.bn.running_var"
            torch.testing.assert_close(
                load_file(tmp_path / f"e{spec.seed}" / "model.safetensors")[var],
                load_file(tmp_path / f"a{spec.seed}" / "model.safetensors")[var],
                atol=1e-3, rtol=0)
    first, second = (load_file(tmp_path / f"e{s}" / "model.safetensors") for s in (0, 1))
    assert any(not torch.equal(first[k], second[k]) for k in first)  # members differ


def test_an_ensemble_lands_in_the_store_as_ordinary_runs(tmp_path):
    store = Store(tmp_path / "store")
    specs = [_spec(s, checkpoint_epochs=[1]) for s in range(3)]
    done = []
    runs = store.runs([*specs, _spec(0, width=0.5)], device="cpu", ensemble=True,
                      derive=lambda run: done.append(run.spec.seed))
    assert [r.spec for r in runs] == [*specs, _spec(0, width=0.5)]
    assert sorted(done) == [0, 0, 1, 2]  # derived where they trained
    for run in runs[:3]:
        manifest = json.loads((store.entry(run.spec) / "manifest.json").read_text())
        assert manifest["trained_with"] == 3 and manifest["epochs_trained"] == 2
        assert run.checkpoint(1) is not None and len(run.history) == 3
    assert "trained_with" not in json.loads(
        (store.entry(runs[3].spec) / "manifest.json").read_text())
    again = Store(tmp_path / "store").runs(specs, device="cpu", ensemble=True)
    assert [r.fresh for r in again] == [False] * 3


def test_a_member_whose_loss_diverges_is_named(tmp_path):
    specs = [_spec(s, lr=1e12, optimizer="sgd") for s in range(2)]
    with pytest.raises(FloatingPointError, match=r"mlp/digits.*non-finite at epoch 1"):
        train_ensemble(specs, [tmp_path / "a", tmp_path / "b"], device="cpu")


def test_members_must_differ_only_in_their_seed(tmp_path):
    with pytest.raises(ValueError, match="differ only in their seed"):
        train_ensemble([_spec(0), _spec(1, width=0.5)], [tmp_path / "a", tmp_path / "b"])
