"""Pinned CPU numerics, so that the same seeds give the same results on every x86-64 machine.

PyTorch's CPU kernels (ATen), MKL's GEMM and oneDNN pick their code path by the instruction
set the processor offers; AVX-512 and AVX2 paths sum in different orders, and training
amplifies the last-bit differences into different models (measured: SD-8 on the MLP moved
from 0.0267 to 0.0229 between two machines, three times its CI half-width). Capping all three
at AVX2 makes CPU results bit-identical on any x86-64 machine with AVX2, at a small cost on
AVX-512 machines. The caps are read lazily by each library, at its first kernel call, so setting
them when netclaims is imported works even after ``import torch``; values already in the
environment are kept, and ``NETCLAIMS_NATIVE_CPU=1`` leaves the libraries to choose.
"""

from __future__ import annotations

import os
import platform

CPU_CAPS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def pin_cpu_numerics() -> None:
    """Set the AVX2 caps in ``os.environ`` unless the user set them or opted out."""
    if os.environ.get("NETCLAIMS_NATIVE_CPU") == "1":
        return
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return
    for name, value in CPU_CAPS.items():
        os.environ.setdefault(name, value)


def cpu_numerics() -> dict[str, str | None]:
    """The processor and the caps in force, for provenance."""
    return {"cpu": _cpu_model(), **{name: os.environ.get(name) for name in CPU_CAPS}}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
