"""Small models shared by the unit tests."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import settings
from torch import nn

pytest_plugins = ["pytester"]

# Hypothesis loads its built-in "ci" profile when CI is set; locally, torch's first-call warm-up
# must not trip the default 200 ms deadline.
if not os.environ.get("CI"):
    settings.register_profile("dev", deadline=None)
    settings.load_profile("dev")


def _import_the_optimizers() -> None:
    """pytester runs sessions in this process and then drops the modules they imported;
    the optimizers' first step imports torch internals that register operator libraries,
    which cannot be imported twice ("Only a single TORCH_LIBRARY…"). Import them here, once,
    so a test file that runs sessions passes on its own too."""
    weight = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([weight])
    weight.sum().backward()
    optimizer.step()


_import_the_optimizers()


@pytest.fixture(autouse=True)
def _papers_declared_per_test(monkeypatch):
    """Papers a test declares (directly or through a pytester session in this process) are
    forgotten after it, so two tests may give one prefix different titles."""
    import netclaims.claims

    monkeypatch.setattr(netclaims.claims, "PAPERS", dict(netclaims.claims.PAPERS))


class ConvNet(nn.Module):
    """1-D conv net in the single-directions style: conv/ReLU blocks, then dense layers."""

    def __init__(self, channels: int = 8, length: int = 20, classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, channels, 3, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, padding=1), nn.ReLU(),
        )
        self.flat = nn.Flatten()
        self.fc = nn.Linear(channels * length, 16)
        self.fc_relu = nn.ReLU()
        self.out = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.fc_relu(self.fc(self.flat(self.features(x)))))


class Residual(nn.Module):
    """A skip connection that bypasses the ReLU inside the block."""

    def __init__(self, width: int = 12, classes: int = 3) -> None:
        super().__init__()
        self.inp = nn.Linear(6, width)
        self.inner = nn.Linear(width, width)
        self.relu = nn.ReLU()
        self.out = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        return self.out(h + self.relu(self.inner(h)))


class SharedReLU(nn.Module):
    """One ReLU module called twice per forward."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(5, 7)
        self.b = nn.Linear(7, 7)
        self.act = nn.ReLU()
        self.out = nn.Linear(7, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.b(self.act(self.a(x)))))


def mlp(seed: int = 0, widths: tuple[int, ...] = (16, 12), d_in: int = 6,
        classes: int = 3) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    prev = d_in
    for w in widths:
        layers += [nn.Linear(prev, w), nn.ReLU()]
        prev = w
    layers.append(nn.Linear(prev, classes))
    return nn.Sequential(*layers).eval()


@pytest.fixture
def mlp_model() -> nn.Sequential:
    return mlp()


@pytest.fixture
def conv_model() -> ConvNet:
    torch.manual_seed(1)
    return ConvNet().eval()


@pytest.fixture
def residual_model() -> Residual:
    torch.manual_seed(2)
    return Residual().eval()


@pytest.fixture
def shared_relu_model() -> SharedReLU:
    torch.manual_seed(3)
    return SharedReLU().eval()


CLAIMS = Path(__file__).parents[1] / "claims"


@pytest.fixture
def claims_helpers(monkeypatch):
    """``claims_helpers("_se")``: a helper module of the built-in claims suite (its protocol
    code), loaded from ``claims/`` as the suite's own modules import it."""
    monkeypatch.syspath_prepend(str(CLAIMS))

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"claims_{name}", CLAIMS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    yield load
    for name in [n for n in sys.modules if n.startswith("_") and
                 getattr(sys.modules[n], "__file__", "") and
                 Path(sys.modules[n].__file__).parent == CLAIMS]:
        del sys.modules[name]


def write_cifar(root: Path, name: str, *, train: int = 300, test: int = 100,
                seed: int = 0) -> Path:
    """A folder in the layout of the official CIFAR archives' Python version (pickled batches,
    ``data`` rows of 3072 bytes), with a few hundred images: each class a random template
    plus noise, so that a net can learn it. CIFAR-100 also gets coarse labels (fine // 5), and
    only 2 fine classes of each of 4 superclasses, so that a few hundred images hold every
    fine class of a superclass many times (as the intraclass-clustering measures need)."""
    import pickle

    import numpy as np

    rng = np.random.default_rng(seed)
    classes = 10 if name == "cifar10" else 100
    templates = rng.integers(0, 256, (classes, 3072))

    present = np.arange(classes) if name == "cifar10" else \
        np.array([5 * c + j for c in range(4) for j in range(2)])

    def batch(n: int) -> dict:
        labels = present[rng.integers(0, present.size, n)]
        noise = rng.integers(0, 256, (n, 3072))
        data = ((templates[labels] + noise) // 2).astype(np.uint8)
        if name == "cifar10":
            return {"data": data, "labels": labels.tolist()}
        return {"data": data, "fine_labels": labels.tolist(),
                "coarse_labels": (labels // 5).tolist()}

    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        files = {f"data_batch_{i}": train // 5 for i in range(1, 6)} | {"test_batch": test}
    else:
        folder = root / "cifar-100-python"
        files = {"train": train, "test": test}
    folder.mkdir(parents=True, exist_ok=True)
    for file, n in files.items():
        with open(folder / file, "wb") as f:
            pickle.dump(batch(n), f)
    names = [f"class{i}" for i in range(classes)]
    meta = ("batches.meta", {"label_names": names}) if name == "cifar10" else \
        ("meta", {"fine_label_names": names, "coarse_label_names": names[:20]})
    with open(folder / meta[0], "wb") as f:
        pickle.dump(meta[1], f)
    return root


@pytest.fixture
def cifar_root(tmp_path):
    """``cifar_root(name, **sizes)``: a generated CIFAR-10/100 folder (:func:`write_cifar`)."""
    return lambda name, **sizes: write_cifar(tmp_path / "cifar", name, **sizes)
