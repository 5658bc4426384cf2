"""The plugin is registered through its entry point and exposes its options."""

from __future__ import annotations

from importlib.metadata import entry_points


def test_entry_point_registered():
    names = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert names.get("netclaims") == "netclaims.plugin"


def test_scale_option_and_ini(pytester):
    pytester.makepyfile("""
        def test_scale(scale):
            assert scale == "paper"
    """)
    assert pytester.runpytest("--netclaims-scale", "paper").ret == 0
    pytester.makeini("[pytest]\nnetclaims_scale = paper\n")
    assert pytester.runpytest().ret == 0
    result = pytester.runpytest("--netclaims-scale", "smoke")
    result.assert_outcomes(failed=1)


def test_help_lists_option_group(pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*netclaims*", "*--netclaims-scale*"])
