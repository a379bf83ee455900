"""The ``groupnorm`` program: ``python -m groupnorm`` and the console entry point run the same code."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from groupnorm import cli
from groupnorm.functional import group_norm
from groupnorm.info import format_info, serving_table
from groupnorm.ops import registry, routing

SRC = Path(__file__).resolve().parents[1] / "src"


def test_info_lists_versions_and_implementations(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "groupnorm" in out and "torch" in out
    assert "cpu    float32" in out


def test_serving_table_covers_every_dtype_on_cpu():
    rows = [r for r in serving_table() if r["device"] == "cpu"]
    assert {r["dtype"] for r in rows} == {"float32", "float16", "bfloat16", "float64"}
    assert all(r["eager"] and r["graph"] for r in rows)


def test_serving_table_reports_what_group_norm_really_runs():
    """The table's eager column names what served a real call of that shape (the grad_fn tells)."""
    x = torch.randn(8, 64, 32, 32, requires_grad=True)
    row = next(r for r in serving_table() if r["device"] == "cpu" and r["dtype"] == "float32")
    grad_fn = type(group_norm(x, 32).grad_fn).__name__
    assert row["eager"] == routing.TORCH_GROUP_NORM and "NativeGroupNorm" in grad_fn
    assert row["graph"] == registry.select(x).name  # the op: the kernels (or the plain-torch fallback)
    big = next(r for r in serving_table((8, 64, 64, 64)) if r["device"] == "cpu" and r["dtype"] == "float32")
    grad_fn = type(group_norm(torch.randn(8, 64, 64, 64, requires_grad=True), 32).grad_fn).__name__
    # plain NCHW float32 at any size: torch's own, by the measured rule (the kernels were not faster on every CPU)
    assert big["eager"] == routing.TORCH_GROUP_NORM and "NativeGroupNorm" in grad_fn
    half = next(
        r for r in serving_table((8, 64, 64, 64)) if r["device"] == "cpu" and r["dtype"] == "bfloat16"
    )
    half_fn = type(group_norm(torch.randn(8, 64, 64, 64, requires_grad=True).bfloat16(), 32).grad_fn).__name__
    assert half["eager"] == registry.select(x).name and "GroupNormFunction" in half_fn


def test_no_command_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "usage: groupnorm" in capsys.readouterr().out


def test_python_dash_m_from_source_tree():
    env = dict(os.environ, PYTHONPATH=str(SRC))
    result = subprocess.run(
        [sys.executable, "-m", "groupnorm", "info"], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == format_info().splitlines()[0]
