"""Training curves of a grid's runs, one panel per metric, from the round records of ``results.jsonl``.

Example::

    plot_curves(read_jsonl("runs/video/results.jsonl"), "runs/video/curves.png", x="round",
                panels=[("val_error", "validation error (%)")], label=lambda r: r["run"])
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path


def plot_curves(
    records: list[dict],
    path: str | os.PathLike,
    *,
    x: str,
    panels: list[tuple[str, str]],
    label: Callable[[dict], str],
    title: str = "",
    x_label: str | None = None,
) -> Path | None:
    """Save one line per run and panel (``(key, axis title)``) to ``path``; None without matplotlib or records."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is in the repro extra
        return None
    by_run: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_run[r["run"]].append(r)
    if not by_run:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (key, name) in zip(axes[0], panels):
        for rs in by_run.values():
            pts = sorted((r[x], r[key]) for r in rs if key in r)
            if pts:
                ax.plot(*zip(*pts), marker="o", markersize=3, label=label(rs[0]))
        ax.set_xlabel(x_label or x)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
