"""The README's reproduction tables are the committed runs' (its code blocks: tests/test_readme_blocks.py)."""

import importlib.util
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


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
