"""Double descent and similarity blocks: shapes of training curves and heatmaps."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from netclaims.metrics import (
    double_descent,
    early_stopping_epoch,
    moving_average,
    similarity_blocks,
)


def test_double_descent_found_where_error_rises_then_falls():
    error = np.array([0.9, 0.5, 0.3, 0.35, 0.45, 0.4, 0.32, 0.25])
    shape = double_descent(error)
    assert shape.peak == 4
    assert shape.rise == pytest.approx(0.15) and shape.fall == pytest.approx(-0.2)
    assert shape.depth == pytest.approx(0.15)


@pytest.mark.parametrize("error", [
    np.linspace(0.9, 0.2, 20),                      # only falls
    np.linspace(0.2, 0.9, 20),                      # only rises
    (np.linspace(-1, 1, 21) ** 2) + 0.1,            # classical U, no second descent
])
def test_no_double_descent_gives_a_depth_at_most_zero(error):
    assert double_descent(error).depth <= 0


@given(st.lists(st.floats(0, 1), min_size=3, max_size=30))
def test_depth_is_bounded_by_its_parts(values):
    shape = double_descent(values)
    assert shape.depth == min(shape.rise, -shape.fall)
    assert 1 <= shape.peak <= len(values) - 2


def test_double_descent_rejects_short_curves():
    with pytest.raises(ValueError, match="at least 3 points"):
        double_descent([0.5, 0.4])


def test_moving_average_keeps_length_and_constants():
    assert moving_average(np.full(7, 0.3), 5) == pytest.approx(np.full(7, 0.3))
    assert moving_average(np.arange(9.0), 3)[1:-1] == pytest.approx(np.arange(1.0, 8.0))
    with pytest.raises(ValueError, match="odd"):
        moving_average(np.arange(5.0), 4)


def _blocks(sizes, inside=0.9, across=0.4):
    e = sum(sizes)
    h = np.full((e, e), across)
    start = 0
    for size in sizes:
        h[start:start + size, start:start + size] = inside
        start += size
    np.fill_diagonal(h, 1.0)
    return h


def test_similarity_blocks_find_a_planted_transition():
    split = similarity_blocks(_blocks([7, 5]))
    assert split.start == 7
    assert split.contrast == pytest.approx(0.5)


def test_the_onset_of_learning_can_be_skipped():
    """A sharp onset (checkpoints 0-1 unlike the rest) outweighs a later, milder transition
    unless the first checkpoints are left out."""
    h = _blocks([2, 8, 6], inside=0.9, across=0.6)
    h[:2, 2:] = h[2:, :2] = 0.05
    assert similarity_blocks(h).start == 2
    later = similarity_blocks(h, skip=4)
    assert later.start == 10 and later.contrast == pytest.approx(0.3)
    with pytest.raises(ValueError, match="skip"):
        similarity_blocks(h, skip=16)


def test_the_early_stopping_epoch_lies_before_perfect_fitting():
    epochs = np.array([0, 1, 2, 3, 5, 10, 15])
    accuracy = np.array([0.1, 0.5, 0.7, 0.6, 0.65, 0.8, 0.75])  # best after fitting at 5
    assert early_stopping_epoch(epochs, accuracy, 5.0) == 2.0
    assert early_stopping_epoch(epochs, accuracy, float("nan")) == 10.0
    assert early_stopping_epoch(epochs, accuracy, 1.0) == 10.0  # nothing before it


def test_smooth_drift_has_less_contrast_than_a_sharp_transition():
    e = 12
    drift = 1 - np.abs(np.subtract.outer(np.arange(e), np.arange(e))) / e
    assert similarity_blocks(drift).contrast < similarity_blocks(_blocks([6, 6])).contrast


def test_similarity_blocks_validate_the_heatmap():
    with pytest.raises(ValueError, match="square"):
        similarity_blocks(np.ones((4, 5)))
    with pytest.raises(ValueError, match="at least 4 checkpoints"):
        similarity_blocks(np.ones((3, 3)))
