"""Run health: a run that did not train or collapsed is never evidence.

Every run a claim reads is diagnosed (:func:`diagnose`, called by the plugin's ``train_run``
and ``train_runs`` fixtures). A run is unhealthy when

* its final training accuracy, on the labels it was trained on, is not at least
  :data:`TRAINED_SHARE` of the way from chance (the most frequent class's share) to 1: it did
  not train. On wholly shuffled labels (``label_noise = 1``) what a net fits is its
  memorization capacity, the quantity those protocols measure, and a narrow net fits little
  (the frivolous-units paper: "all networks of the 1x size or greater fit the training set",
  the narrower ones did not): there the floor is chance plus :data:`NOISE_SDS` binomial
  standard deviations of the training accuracy, which a dead or constant net stays under; or
* one class takes at least :data:`COLLAPSED_SHARE` of its predictions on the test set: it
  collapsed to a constant prediction (a dead network answers with its output bias).

A claim that read an unhealthy run is INCONCLUSIVE, whatever it measured, with each such run
and its numbers: comparing a trained net with an untrained one measures the training failure,
not the finding. (A run whose loss became NaN stops training with an error naming the step.)
"""

from __future__ import annotations

import math

import torch

from netclaims.metrics import chance_accuracy
from netclaims.run import Run
from netclaims.units import batches, eval_mode

TRAINED_SHARE = 0.2
NOISE_SDS = 3.0
COLLAPSED_SHARE = 0.99


def training_floor(chance: float, samples: int, label_noise: float) -> float:
    """The training accuracy a run must reach to count as trained (module docstring)."""
    if label_noise >= 1.0:
        return chance + NOISE_SDS * math.sqrt(chance * (1 - chance) / samples)
    return chance + TRAINED_SHARE * (1 - chance)


def diagnose(run: Run) -> str | None:
    """Why ``run`` is not evidence, or None when it is healthy."""
    chance = chance_accuracy(run.data.y_train)
    accuracy = float(run.history.iloc[-1]["train_acc"])
    floor = training_floor(chance, run.data.y_train.shape[0], run.spec.label_noise)
    if accuracy < floor:
        return (f"did not train: training accuracy {accuracy:.3f}, chance {chance:.3f}, "
                f"floor {floor:.3f}")
    counts = run.derived("predicted-classes", {}, lambda: {"counts": _predicted(run)})["counts"]
    share = float(counts.max()) / float(counts.sum())
    if share >= COLLAPSED_SHARE:
        return (f"collapsed: class {int(counts.argmax())} takes {share:.1%} of its test "
                "predictions")
    return None


def _predicted(run: Run) -> torch.Tensor:
    """How often the final model predicts each class on the test set."""
    model, data = run.model, run.data
    with torch.no_grad(), eval_mode(model):
        predictions = torch.cat([model(x).argmax(-1) for x, _ in batches(data.x_test)])
    return torch.bincount(predictions, minlength=data.num_classes)
