"""``groupnorm.env`` is the one place that reads ``GROUPNORM_*`` variables, and docs/environment.md is its table."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

from groupnorm import env

ROOT = Path(__file__).resolve().parents[1]
NAME = re.compile(r"GROUPNORM_[A-Z0-9_]+")
KNOWN = {v.name for v in env.VARIABLES}


def _string_names(path: Path) -> set[str]:
    """``GROUPNORM_*`` names written as a whole string literal in a Python file (what code reads or sets)."""
    names = set()
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type == tokenize.STRING:
            value = tok.string.strip("\"'rbf")
            if NAME.fullmatch(value):
                names.add(value)
    return names


def test_docs_table_is_the_modules():
    text = (ROOT / "docs" / "environment.md").read_text()
    assert env.markdown_table() in text, "docs/environment.md is stale: run python scripts/env_table.py"


def test_no_other_package_module_names_a_variable():
    offenders = {
        str(path.relative_to(ROOT)): names
        for path in sorted((ROOT / "src" / "groupnorm").rglob("*.py"))
        if path.name != "env.py" and (names := _string_names(path))
    }
    assert offenders == {}, f"read GROUPNORM_* variables through groupnorm.env: {offenders}"


def test_tests_and_docs_name_only_known_variables():
    mentioned: dict[str, set[str]] = {}
    for path in sorted((ROOT / "tests").rglob("*.py")):
        mentioned[str(path.relative_to(ROOT))] = _string_names(path)
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        mentioned[str(path.relative_to(ROOT))] = set(NAME.findall(path.read_text()))
    unknown = {where: names - KNOWN for where, names in mentioned.items() if names - KNOWN}
    assert unknown == {}, f"not in groupnorm.env.VARIABLES: {unknown}"


def test_every_variable_has_a_meaning_and_a_scope():
    assert len(KNOWN) == len(env.VARIABLES)
    for v in env.VARIABLES:
        assert NAME.fullmatch(v.name) and v.meaning and v.scope in ("package", "tests"), v


@pytest.mark.parametrize("raw", ["", "   "])
def test_unset_or_empty_means_the_default(monkeypatch, raw):
    monkeypatch.setenv("GROUPNORM_CPU_WAVE_BYTES", raw)
    assert env.CPU_WAVE_BYTES.get() == 4 << 20
    monkeypatch.delenv("GROUPNORM_CPU_WAVE_BYTES")
    assert env.CPU_WAVE_BYTES.get() == 4 << 20
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("GROUPNORM_CPU_CC", raw)
    assert env.CPU_CC.get() == "cc"
    monkeypatch.setenv("CC", "clang")
    assert env.CPU_CC.get() == "clang"  # a default that follows another variable


def test_values_are_parsed(monkeypatch):
    monkeypatch.setenv("GROUPNORM_CPU_SMALL_NUMEL", "0")
    assert env.CPU_SMALL_NUMEL.get() == 0
    for off in ("0", "false", "OFF", " no "):
        monkeypatch.setenv("GROUPNORM_CPU_KERNEL", off)
        assert env.CPU_KERNEL.get() is False
    monkeypatch.setenv("GROUPNORM_CPU_KERNEL", "1")
    assert env.CPU_KERNEL.get() is True


@pytest.mark.parametrize("raw", ["4M", "-1", "1.5"])
def test_a_bad_value_names_the_variable_and_the_value(monkeypatch, raw):
    monkeypatch.setenv("GROUPNORM_CPU_STREAM_BYTES", raw)
    with pytest.raises(
        ValueError, match=rf"GROUPNORM_CPU_STREAM_BYTES must be a non-negative integer.*{re.escape(raw)}"
    ):
        env.CPU_STREAM_BYTES.get()
