"""Rewrite the README's reproduction tables from the committed sweeps (``summary_tables`` of each run folder).

The README copies these tables; ``tests/test_readme.py`` fails when a committed run changes and the copy does not.
Run from the repository root after a sweep lands: ``python scripts/readme_tables.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

from groupnorm.repro.report import summary_tables

ROOT = Path(__file__).resolve().parents[1]
# (a word the table's first header cell holds, the committed run it shows)
README_TABLES = (("digits", "docs/results/demo"), ("cifar10", "docs/results/cifar10-cpu"))


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    for word, folder in README_TABLES:
        # one table whose header names the data set, and the tables after it, one blank line apart
        block = re.compile(
            rf"^\|[^\n]*\b{word}\b[^\n]*\n(?:\|[^\n]*\n)+(?:\n\|[^\n]*\n(?:\|[^\n]*\n)+)*", re.M
        )
        found = block.search(text)
        if found is None:
            raise SystemExit(f"README.md has no table naming {word!r}; add one where the run should be shown")
        text = text[: found.start()] + summary_tables(ROOT / folder) + text[found.end() :]
    readme.write_text(text)


if __name__ == "__main__":
    main()
