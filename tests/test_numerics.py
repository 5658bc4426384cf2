"""The CPU instruction-set caps and the numerics fingerprint that baselines compare."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from netclaims.numerics import (
    CPU_CAPS,
    NUMERICS_PACKAGES,
    describe,
    fingerprint_differences,
    numerics_fingerprint,
)

X86 = os.uname().machine.lower() in {"x86_64", "amd64"}

PROBE = """
import os, torch, netclaims.metrics
untouched = os.environ.get("ATEN_CPU_CAPABILITY")
import netclaims.train
print(os.environ.get("ATEN_CPU_CAPABILITY"), os.environ.get("MKL_CBWR"),
      torch.backends.cpu.get_cpu_capability(), untouched)
"""


def _probe(**env: str) -> list[str]:
    base = {k: v for k, v in os.environ.items()
            if k not in CPU_CAPS and k != "NETCLAIMS_NATIVE_CPU"}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**base, **env}, check=True,
                         capture_output=True, text=True).stdout
    return out.split()


@pytest.mark.skipif(not X86, reason="the caps are x86-64 instruction sets")
def test_the_trainer_caps_kernels_at_avx2_even_after_torch_and_the_metrics_do_not():
    aten, mkl, capability, after_metrics = _probe()
    assert after_metrics == "None"  # a notebook that only wants linear_cka is left alone
    assert (aten, mkl) == ("avx2", "AVX2")
    assert capability in {"AVX2", "DEFAULT"}  # DEFAULT only on a machine without AVX2


def test_user_choice_and_opt_out_are_kept():
    assert _probe(ATEN_CPU_CAPABILITY="default")[0] == "default"
    aten, mkl, *_ = _probe(NETCLAIMS_NATIVE_CPU="1")
    assert (aten, mkl) == ("None", "None")


def test_fingerprint_names_versions_processor_and_caps():
    facts = numerics_fingerprint("cpu")
    assert set(facts) == {*NUMERICS_PACKAGES, "device", "cpu", "cpu_id", "isa", *CPU_CAPS}
    assert facts["torch"] == torch.__version__ and facts["numpy"] == np.__version__
    assert facts["cpu"] and facts["isa"] in {"avx512f", "avx2", "avx", "sse", "unknown"}
    line = describe(facts)
    assert line.startswith(f"torch {torch.__version__}, numpy") and "on cpu " in line


def test_fingerprint_of_a_gpu_leaves_out_the_processor():
    facts = numerics_fingerprint("cuda:NVIDIA H100")
    assert facts["device"] == "cuda:NVIDIA H100" and "cpu" not in facts
    assert describe(facts).endswith("on cuda:NVIDIA H100")


def test_fingerprint_differences():
    facts = numerics_fingerprint("cpu")
    assert fingerprint_differences(facts, dict(facts)) == []
    other = {**facts, "torch": "9.9.9", "isa": "mmx"}  # values no machine reports
    assert fingerprint_differences(other, facts) == [
        f"isa mmx -> {facts['isa']}", f"torch 9.9.9 -> {facts['torch']}"]
    assert fingerprint_differences(None, facts) == ["no numerics fingerprint recorded"]
