"""The netclaims pytest plugin (registered through the ``pytest11`` entry point).

Options and fixtures for claims arrive with the plugin issue; for now the plugin registers its
option group so that ``pytest --help`` lists it and the entry point is exercised.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("netclaims", "netclaims: executable claims of deep-learning papers")
    group.addoption("--netclaims-scale", choices=("smoke", "paper"), default=None,
                    help="scale of the claims' protocols (default: smoke)")
    parser.addini("netclaims_scale", "default scale of the claims' protocols", default="smoke")


@pytest.fixture(scope="session")
def scale(pytestconfig: pytest.Config) -> str:
    """The scale the claims run at: ``smoke`` (CPU, minutes) or ``paper``."""
    return pytestconfig.getoption("--netclaims-scale") or pytestconfig.getini("netclaims_scale")
