"""Rewrite the README's reproduction tables from the committed runs.

The README copies these tables; ``tests/test_readme.py`` fails when a committed run changes and the copy does not.
Run from the repository root after a run lands: ``python scripts/readme_tables.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from groupnorm.repro.detection.report import ap_table, read_summary
from groupnorm.repro.report import summary_tables
from groupnorm.repro.video.report import error_table

ROOT = Path(__file__).resolve().parents[1]


def _video(folder: Path) -> str:
    return error_table(read_summary(folder))


# detection runs of the same recipe in other folders, shown as more rows of the one table (the GN variants on the
# GN+WS backbone, run after the five variants)
DETECTION_MORE = ("docs/results/detection-cpu-gnws",)


def _detection(folder: Path) -> str:
    rows = read_summary(folder)
    for more in DETECTION_MORE:
        if has_runs(more):
            rows += read_summary(ROOT / more)
    return ap_table(rows)


# (a phrase the table's first header line holds, the committed run it shows, the tables it renders, whether
# the tables after it, one blank line apart, belong to it too)
README_TABLES: tuple[tuple[str, str, Callable[[Path], str], bool], ...] = (
    ("digits", "docs/results/demo", summary_tables, True),
    ("cifar10", "docs/results/cifar10-cpu", summary_tables, True),
    ("clips/device", "docs/results/video-cpu", _video, False),
    ("box AP @", "docs/results/detection-cpu", _detection, False),
)


def has_runs(folder: str) -> bool:
    """Whether ``folder`` holds a finished run (its ``summary.csv`` has a row below the header)."""
    summary = ROOT / folder / "summary.csv"
    return summary.exists() and len(summary.read_text().strip().splitlines()) > 1


def rendered(folder: str) -> str:
    """The tables the README shows for ``folder`` (one of :data:`README_TABLES`), from its committed files."""
    for _phrase, known, render, _following in README_TABLES:
        if known == folder:
            return render(ROOT / folder)
    raise KeyError(f"folder={folder!r} is not one of the README's runs")


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    for phrase, folder, render, following in README_TABLES:
        if not has_runs(folder):
            continue  # not run yet: the README says so in its own words
        more = r"(?:\n\|[^\n]*\n(?:\|[^\n]*\n)+)*" if following else ""
        named = rf"(?<!\w){re.escape(phrase)}(?!\w)"
        block = re.compile(rf"^\|[^\n]*{named}[^\n]*\n(?:\|[^\n]*\n)+{more}", re.M)
        found = block.search(text)
        if found is None:
            raise SystemExit(
                f"README.md has no table naming {phrase!r}; add one where {folder} should be shown"
            )
        tables = render(ROOT / folder).rstrip("\n") + "\n"
        text = text[: found.start()] + tables + text[found.end() :]
    readme.write_text(text)


if __name__ == "__main__":
    main()
