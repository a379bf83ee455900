"""The table of a recipe search (scripts/recipe_search.sh): one row per candidate, scored on its validation split.

Usage: python scripts/recipe_search_table.py OUT   (OUT: the search's output directory)
"""

from __future__ import annotations

import sys
from pathlib import Path

from groupnorm.repro.report import load_runs


def rows(out: Path) -> list[str]:
    lines = [
        "| candidate | norm | epochs done | val error, final (%)* | val error by epoch | train error, final (%) "
        "| s/epoch |",
        "|---|---|---|---|---|---|---|",
    ]
    note = "\n*: the median of the last 5 % of the epochs (at least one), as every result of the sweep."
    for cand in sorted(p for p in out.iterdir() if (p / "results.jsonl").exists()):
        for run in load_runs(cand / "results.jsonl"):
            recs = run.records
            done = len(recs) >= run.config["epochs"]
            final = run.final("val_error") if done else float("nan")
            curve = " ".join(f"{r['val_error']:.1f}" for r in recs)
            train = run.final("train_error") if done else float("nan")
            secs = sum(r["seconds"] for r in recs) / len(recs)
            lines.append(
                f"| {cand.name} | {run.label} | {len(recs)}/{run.config['epochs']} | {final:.2f} | {curve} | "
                f"{train:.2f} | {secs:.0f} |"
            )
    return [*lines, note]


if __name__ == "__main__":
    out = Path(sys.argv[1])
    print("\n".join(rows(out)))
