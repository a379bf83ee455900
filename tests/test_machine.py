"""Every result names its machine: CPU model, cores, L3, the instruction sets the CPU runs and the kernels' build."""

from __future__ import annotations

import pytest

from groupnorm import machine
from groupnorm.bench.report import environment

V3 = set(machine.X86_64_V3_FLAGS)
V4 = V3 | set(machine.X86_64_V4_FLAGS)


def test_isa_levels_from_cpu_flags(monkeypatch):
    monkeypatch.setattr(machine.platform, "machine", lambda: "x86_64")
    assert machine.isa_level(set()) == "x86-64"
    assert machine.isa_level(V3) == "x86-64-v3"
    assert machine.isa_level(V4) == "x86-64-v4"
    assert machine.isa_level(V4 - {"avx512vl"}) == "x86-64-v3"  # AMD Zen 3 style: AVX2 only
    assert machine.can_run("x86-64-v3", V4) and not machine.can_run("x86-64-v4", V3)
    assert machine.can_run("native", set())
    with pytest.raises(ValueError, match="target: expected native or one of"):
        machine.can_run("znver4", V4)


def test_results_record_the_machine_and_the_build():
    env = environment("cpu")
    for field in machine.FIELDS:
        assert field in env
    assert env["cpu_isa"] == machine.isa_level()
    assert env["kernel_build"].startswith(("native", "x86-64", "none"))
