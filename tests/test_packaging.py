"""What an installed netclaims carries: every package, the license, and the built-in claims
suite (``netclaims.suite``, run by ``netclaims run``), so a wheel is self-contained."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from netclaims.cli import suite_path

ROOT = Path(__file__).parents[1]


def test_the_wheel_ships_every_package_the_license_and_the_claims(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(tmp_path)],
                   check=True, timeout=600, capture_output=True)
    names = zipfile.ZipFile(next(tmp_path.glob("netclaims-*.whl"))).namelist()
    packages = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "netclaims").rglob(
        "__init__.py")}
    assert packages <= {n.rsplit("/", 1)[0] for n in names if n.endswith("/__init__.py")}
    suite = {n.removeprefix("netclaims/suite/") for n in names
             if n.startswith("netclaims/suite/")}
    assert {p.name for p in (ROOT / "claims").glob("*.py")} <= suite
    assert {"baselines/smoke.json", "README.md"} <= suite
    assert any(n.endswith("licenses/LICENSE") for n in names)


def test_the_suite_of_a_checkout_is_its_claims_folder():
    assert suite_path() == ROOT / "claims"
