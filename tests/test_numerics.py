"""The CPU instruction-set caps that make results identical across x86-64 machines."""

import os
import subprocess
import sys

import pytest

from netclaims.numerics import CPU_CAPS, cpu_numerics

X86 = os.uname().machine.lower() in {"x86_64", "amd64"}

PROBE = """
import os, torch, netclaims
print(os.environ.get("ATEN_CPU_CAPABILITY"), os.environ.get("MKL_CBWR"),
      torch.backends.cpu.get_cpu_capability())
"""


def _probe(**env: str) -> list[str]:
    base = {k: v for k, v in os.environ.items()
            if k not in CPU_CAPS and k != "NETCLAIMS_NATIVE_CPU"}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**base, **env}, check=True,
                         capture_output=True, text=True).stdout
    return out.split()


@pytest.mark.skipif(not X86, reason="the caps are x86-64 instruction sets")
def test_import_caps_kernels_at_avx2_even_after_torch():
    aten, mkl, capability = _probe()
    assert (aten, mkl) == ("avx2", "AVX2")
    assert capability in {"AVX2", "DEFAULT"}  # DEFAULT only on a machine without AVX2


def test_user_choice_and_opt_out_are_kept():
    assert _probe(ATEN_CPU_CAPABILITY="default")[0] == "default"
    aten, mkl, _ = _probe(NETCLAIMS_NATIVE_CPU="1")
    assert (aten, mkl) == ("None", "None")


def test_provenance_names_the_caps_and_the_processor():
    facts = cpu_numerics()
    assert set(facts) == {"cpu", *CPU_CAPS}
    assert facts["cpu"]
