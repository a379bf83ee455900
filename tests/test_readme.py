"""The README's Python examples run as written (in order, in one namespace)."""

import importlib.util
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
    pytest.importorskip("torchvision")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for i, block in enumerate(blocks):
        if "import diffusers" in block and importlib.util.find_spec("diffusers") is None:
            continue  # an optional extra (groupnorm[diffusers]); later blocks do not use its names
        exec(compile(block, f"README.md python block {i}", "exec"), namespace)  # noqa: S102


def _readme_tables_script():
    spec = importlib.util.spec_from_file_location(
        "readme_tables", README.parent / "scripts" / "readme_tables.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_tables_are_the_committed_runs():
    """The README's reproduction tables equal what the committed runs give (``python scripts/readme_tables.py``)."""
    script = _readme_tables_script()
    text = README.read_text()
    shown = 0
    for _phrase, folder, _render, _following in script.README_TABLES:
        if not script.has_runs(folder):
            continue
        tables = script.rendered(folder).rstrip("\n")
        assert tables in text, f"README.md is stale for {folder}: run python scripts/readme_tables.py"
        shown += 1
    assert shown >= 2
