"""Rewrite the table of docs/environment.md from ``groupnorm.env.VARIABLES``.

``tests/test_env.py`` fails when a variable is added to (or changed in) ``groupnorm.env`` and the page is not.
Run from the repository root: ``python scripts/env_table.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

from groupnorm.env import markdown_table

PAGE = Path(__file__).resolve().parents[1] / "docs" / "environment.md"


def main() -> None:
    text = PAGE.read_text()
    table = re.compile(r"^\| Variable \|[^\n]*\n(?:\|[^\n]*\n)+", re.M)
    if table.search(text) is None:
        raise SystemExit(f"{PAGE} has no table starting with '| Variable |'")
    PAGE.write_text(table.sub(lambda _m: markdown_table(), text, count=1))


if __name__ == "__main__":
    main()
