"""`make docs` builds the API reference from the docstrings."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _doc_modules():
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith("DOC_MODULES :="))
    return line.split(":=", 1)[1].split()


def test_api_reference_builds_with_a_page_per_public_module(tmp_path):
    pytest.importorskip("pdoc")
    modules = _doc_modules()
    assert "groupnorm.functional" in modules
    result = subprocess.run(
        [sys.executable, "-m", "pdoc", "--docformat", "restructuredtext", "-o", str(tmp_path), *modules],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "groupnorm" / "functional.html").read_text()
    assert "group_norm" in page and "group_size" in page
    assert (tmp_path / "groupnorm" / "ops" / "registry.html").exists()
