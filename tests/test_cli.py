"""The ``groupnorm`` program: ``python -m groupnorm`` and the console entry point run the same code."""

import os
import subprocess
import sys
from pathlib import Path

from groupnorm import cli
from groupnorm.info import format_info, serving_table

SRC = Path(__file__).resolve().parents[1] / "src"


def test_info_lists_versions_and_implementations(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "groupnorm" in out and "torch" in out
    assert "cpu    float32" in out


def test_serving_table_covers_every_dtype_on_cpu():
    rows = [r for r in serving_table() if r["device"] == "cpu"]
    assert {r["dtype"] for r in rows} == {"float32", "float16", "bfloat16", "float64"}
    assert all(r["implementation"] for r in rows)


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
