"""Protocol choices shared by several suites (helpers importable by pool workers, unlike
``conftest.py``)."""

from __future__ import annotations

from netclaims.claims import Architecture


def conv_batchnorm(arch: Architecture) -> bool:
    """Whether a protocol that follows the papers' convolutional nets trains ``arch`` with
    batch norm: conv nets that have that variant do, as the papers' (single directions:
    "batch normalization was used for all convolutional networks"; early epochs: ResNet-50);
    MLPs do not, as the single-directions paper's MNIST MLPs."""
    return "conv" in arch.capabilities and "batchnorm" in arch.capabilities
