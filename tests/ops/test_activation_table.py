"""One activation table: the C enum and every backend's codes agree with ``groupnorm.activations.TABLE``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from groupnorm import activations
from groupnorm.activations import ACTIVATION_CODES, TABLE
from groupnorm.ops.cpu import kernels

CSRC = Path(__file__).resolve().parents[2] / "src" / "groupnorm" / "ops" / "cpu" / "csrc"
_ENUM = re.compile(r"enum\s*\{([^}]*\bACT_NONE\b[^}]*)\}", re.S)
_MEMBER = re.compile(r"\bACT_([A-Z0-9_]+)\s*=\s*(\d+)")


def c_activation_enum() -> dict[str, int]:
    """The ``ACT_*`` enum of the C sources, as {activation name: code}; exactly one definition may exist."""
    bodies = [body for path in sorted(CSRC.glob("*.[ch]")) for body in _ENUM.findall(path.read_text())]
    assert len(bodies) == 1, f"expected one ACT_* enum under {CSRC}, found {len(bodies)}"
    return {name.lower(): int(code) for name, code in _MEMBER.findall(bodies[0])}


def test_table_names_and_codes_are_distinct():
    assert len({a.name for a in TABLE}) == len({a.code for a in TABLE}) == len(TABLE)
    assert TABLE[0].name == "none" and TABLE[0].code == 0  # the kernels skip the epilogue on code 0


def test_c_enum_matches_the_table():
    assert c_activation_enum() == ACTIVATION_CODES


def test_cpu_kernels_take_the_tables_codes():
    assert kernels.ACTIVATION_CODES is ACTIVATION_CODES


def test_triton_takes_the_tables_codes():
    pytest.importorskip("triton")
    from groupnorm.ops.triton import epilogue

    assert epilogue.ACTIVATION_CODES is ACTIVATION_CODES


@pytest.mark.parametrize("act", [a for a in TABLE if a.name != "none"], ids=lambda a: a.name)
def test_derivative_is_the_forwards(act):
    """The table's derivative formula is d forward / dz (what the plain-torch backward relies on)."""
    z = torch.linspace(-4, 4, 101, dtype=torch.float64, requires_grad=True)
    (expected,) = torch.autograd.grad(act.forward(z).sum(), z)
    torch.testing.assert_close(act.derivative(z.detach()), expected)
    assert activations.apply_activation(z, act.name) is not z
