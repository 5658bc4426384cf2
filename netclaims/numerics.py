"""CPU numerics: the caps netclaims puts on instruction sets, and the fingerprint of what decides
the last bits of a result.

PyTorch's CPU kernels (ATen), MKL's GEMM and oneDNN pick their code path by the instruction
set the processor offers; AVX-512 and AVX2 paths sum in different orders, and training
amplifies the last-bit differences into different models. Capping all three at AVX2 removes
that one source of difference between x86-64 machines, at a small cost on AVX-512 machines.
The caps are read lazily by each library, at its first kernel call; the trainer
(:mod:`netclaims.train`, hence the store) and the pytest plugin set them when imported, which
works even after ``import torch`` as long as no kernel has run yet (a notebook that wants the
suite's numerics imports ``netclaims.train`` before computing anything). Importing the metrics
alone changes nothing. Values already in the environment are kept, and
``NETCLAIMS_NATIVE_CPU=1`` leaves the libraries to choose.

The caps do not make every machine agree: MKL and oneDNN also choose kernels by vendor, model
and cache sizes, and package versions change kernels and data generation. Measured: the MLP's
SD-8 estimate is 0.0267 on the AMD EPYC that recorded the smoke baseline and 0.0229 on the CI
machine, with or without the caps, while most other estimates agree to three digits. So every
report records :func:`numerics_fingerprint`, and a baseline is compared strictly (verdicts and
estimates) only where the fingerprint is the same; elsewhere only reversed verdicts fail (see
:func:`netclaims.report.compare_to_baseline`).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from importlib import metadata

CPU_CAPS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}

# The packages that train the networks or generate the embedded data.
NUMERICS_PACKAGES = ("torch", "numpy", "scipy", "mnist1d", "scikit-learn")


def pin_cpu_numerics() -> None:
    """Set the AVX2 caps in ``os.environ`` unless the user set them or opted out."""
    if os.environ.get("NETCLAIMS_NATIVE_CPU") == "1":
        return
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return
    for name, value in CPU_CAPS.items():
        os.environ.setdefault(name, value)


def numerics_fingerprint(device: str = "cpu") -> dict[str, str | None]:
    """What decides the last bits of a result on ``device`` (``"cpu"`` or ``"cuda:<name>"``):
    the versions of :data:`NUMERICS_PACKAGES`, the device and, on the CPU, the processor
    (vendor, family and model, widest vector instruction set) and the caps in force. Two runs
    with equal fingerprints and seeds give bit-identical results."""
    import torch  # its own version string names the build (+cu130, +cpu), metadata's doesn't

    facts: dict[str, str | None] = {name: _version(name) for name in NUMERICS_PACKAGES}
    facts["torch"] = torch.__version__
    facts["device"] = device
    if device == "cpu":
        facts.update(_processor())
        facts.update({name: os.environ.get(name) for name in CPU_CAPS})
    return facts


def fingerprint_differences(recorded: Mapping[str, object] | None,
                            current: Mapping[str, object]) -> list[str]:
    """``["torch 2.14.1 -> 2.15.0", ...]``: how ``current`` differs from ``recorded`` (one entry
    saying so when nothing was recorded); empty when they are the same."""
    if not recorded:
        return ["no numerics fingerprint recorded"]
    return [f"{key} {recorded.get(key)} -> {current.get(key)}"
            for key in sorted(set(recorded) | set(current))
            if recorded.get(key) != current.get(key)]


def describe(fingerprint: Mapping[str, object]) -> str:
    """One line for terminals: ``torch 2.14.1, numpy 2.3.5, ... on cpu AMD EPYC (...)``."""
    versions = ", ".join(f"{name} {fingerprint.get(name)}" for name in NUMERICS_PACKAGES)
    where = str(fingerprint.get("device"))
    if where == "cpu":
        caps = "native" if fingerprint.get("ATEN_CPU_CAPABILITY") is None \
            else str(fingerprint.get("ATEN_CPU_CAPABILITY"))
        where = (f"cpu {fingerprint.get('cpu')} ({fingerprint.get('cpu_id')}, "
                 f"{fingerprint.get('isa')}, kernels capped at {caps})")
    return f"{versions} on {where}"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _processor() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if not line.strip():
                    break  # the first processor describes them all
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    except OSError:
        pass
    flags = set(info.get("flags", "").split())
    isa = next((name for name in ("avx512f", "avx2", "avx") if name in flags),
               "unknown" if not flags else "sse")
    return {"cpu": info.get("model name") or platform.processor() or platform.machine(),
            "cpu_id": (f"{info.get('vendor_id')} family {info.get('cpu family')} model "
                       f"{info.get('model')}" if info else platform.machine()),
            "isa": isa}
