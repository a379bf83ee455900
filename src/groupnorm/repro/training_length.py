"""How the GN–BN gap moves with training length: sweeps that differ only in their epochs, side by side.

Figure 1's two ends are compared at each schedule: GN − BN at the largest batch per device (the paper: +0.5, BN
slightly ahead) and BN − GN at the smallest (the paper at 2 images per device: +10.6, GN far ahead). Reads the
finished runs of each sweep directory (``results.jsonl``, as :mod:`groupnorm.repro.report` does), writes
``gap-vs-epochs.md`` and ``gap_vs_epochs.png`` into ``out``.

Example (the committed CPU runs: the 10-epoch grid and the 30-epoch runs of the same recipe)::

    python -m groupnorm.repro.training_length docs/results/cifar10-cpu docs/results/cifar10-cpu/long \\
        --out docs/results/cifar10-cpu/long
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from groupnorm.repro import paper
from groupnorm.repro.presets import PRESETS
from groupnorm.repro.report import cells, error_name, load_runs
from groupnorm.repro.runtime import atomic_write_text

# Figure 1's two ends
BIG, SMALL = 32, 2
# the runs compared: BN, and GN with the grid's grouping (not the group ablation's other groupings)
COMPARED = {"bn": "bn", f"gn G={PRESETS['cifar10-cpu']['gn_groups']}": "gn"}


def gaps(sweeps: list[str | Path]) -> list[dict]:
    """One row per training length found in ``sweeps``: the mean errors of BN and GN (main grouping) at 32 and at
    2 images per device, the number of seeds, and the gaps where both cells exist."""
    by_epochs: dict[int, dict[tuple[str, int], tuple[float, int]]] = {}
    for sweep in sweeps:
        runs = [r for r in load_runs(Path(sweep) / "results.jsonl") if r.records and r.finished]
        for (label, b), (mean, _std, seeds) in cells(runs, "val_error").items():
            if b not in (BIG, SMALL) or label not in COMPARED:
                continue
            epochs = next(r.config["epochs"] for r in runs if r.label == label)
            norm = COMPARED[label]
            by_epochs.setdefault(epochs, {})[(norm, b)] = (mean, seeds)
    rows = []
    for epochs in sorted(by_epochs):
        cell = by_epochs[epochs]
        row: dict = {"epochs": epochs}
        for norm in ("bn", "gn"):
            for b in (BIG, SMALL):
                row[f"{norm}_{b}"], row[f"{norm}_{b}_seeds"] = cell.get((norm, b), (None, 0))
        row["gn_minus_bn_32"] = _diff(row["gn_32"], row["bn_32"])
        row["bn_minus_gn_2"] = _diff(row["bn_2"], row["gn_2"])
        rows.append(row)
    return rows


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _num(v: float | None) -> str:
    return "pending" if v is None else f"{v:.2f}"


def trend(rows: list[dict], key: str) -> tuple[float, float] | None:
    """A line through the gap against log2(epochs), fitted by least squares to the rows that have it: (slope per
    doubling of the epochs, intercept), or None with fewer than two points. A rough extrapolation only."""
    pts = [(math.log2(r["epochs"]), r[key]) for r in rows if r[key] is not None]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    slope = sum((x - mx) * (y - my) for x, y in pts) / sxx
    return slope, my - slope * mx


def epochs_to_reach(rows: list[dict], key: str, target: float, below: bool) -> float | None:
    """The training length at which the fitted trend of ``key`` reaches ``target`` (from above when ``below``),
    or None when it does not move that way."""
    fit = trend(rows, key)
    if fit is None or fit[0] == 0 or (fit[0] > 0) == below:
        return None
    measured = [r for r in rows if r[key] is not None]
    last = max(measured, key=lambda r: r["epochs"])
    if (last[key] <= target) if below else (last[key] >= target):
        return None  # already there at the longest schedule run: nothing to forecast
    return 2 ** ((target - fit[1]) / fit[0])


def markdown(rows: list[dict], error: str = "test") -> str:
    """The table and the targets' reading."""
    paper_32 = paper.paper_error("gn", BIG) - paper.paper_error("bn", BIG)
    paper_2 = paper.paper_error("bn", SMALL) - paper.paper_error("gn", SMALL)
    lines = [
        f"| epochs | BN {BIG} | GN {BIG} | GN − BN at {BIG} | BN {SMALL} | GN {SMALL} | BN − GN at {SMALL} |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['epochs']} | {_num(r['bn_32'])} | {_num(r['gn_32'])} | {_num(r['gn_minus_bn_32'])} | "
            f"{_num(r['bn_2'])} | {_num(r['gn_2'])} | {_num(r['bn_minus_gn_2'])} |"
        )
    lines += [
        f"| paper (ImageNet, 100 epochs) | {paper.paper_error('bn', BIG)} | {paper.paper_error('gn', BIG)} | "
        f"{paper_32:+.1f} | {paper.paper_error('bn', SMALL)} | {paper.paper_error('gn', SMALL)} | {paper_2:+.1f} |",
        "",
        f"{error.capitalize()} error in %, mean over the seeds each cell has; a gap is positive where the paper's "
        f"ordering holds at {SMALL} images per device (GN ahead) and where BN is ahead at {BIG}.",
        "",
    ]
    reach_32 = epochs_to_reach(rows, "gn_minus_bn_32", 3.0, below=True)
    reach_2 = epochs_to_reach(rows, "bn_minus_gn_2", 2.0, below=False)
    fit_32, fit_2 = trend(rows, "gn_minus_bn_32"), trend(rows, "bn_minus_gn_2")
    if fit_32:
        lines.append(
            f"- GN − BN at {BIG} moves by {fit_32[0]:+.2f} points per doubling of the epochs"
            + (f"; at that rate it reaches 3 points at about {reach_32:.0f} epochs." if reach_32 else ".")
        )
    if fit_2:
        lines.append(
            f"- BN − GN at {SMALL} moves by {fit_2[0]:+.2f} points per doubling of the epochs"
            + (f"; at that rate it reaches 2 points at about {reach_2:.0f} epochs." if reach_2 else ".")
        )
    if fit_32 or fit_2:
        lines += [
            "",
            "(A straight line through two or three schedules in log-epochs: a direction, not a forecast.)",
        ]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    """Both gaps against epochs (log scale), with the paper's values as dotted lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for key, label, color, ref in (
        ("gn_minus_bn_32", f"GN − BN at {BIG}/device", "tab:blue", 0.5),
        ("bn_minus_gn_2", f"BN − GN at {SMALL}/device", "tab:red", 10.6),
    ):
        pts = [(r["epochs"], r[key]) for r in rows if r[key] is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", color=color, label=label)
        ax.axhline(ref, linestyle=":", color=color, alpha=0.6, label=f"paper: {ref:+.1f}")
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xscale("log", base=2)
    epochs = [r["epochs"] for r in rows]
    if epochs:
        ax.set_xticks(epochs, [str(e) for e in epochs])
    ax.set_xlabel("epochs (same recipe, cosine to 0 at the last)")
    ax.set_ylabel("gap (points of error)")
    ax.set_title("The GN–BN gap against training length")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(sweeps: list[str | Path], out: str | Path) -> Path:
    """Write ``gap-vs-epochs.md`` and ``gap_vs_epochs.png`` into ``out``; return the markdown's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = gaps(sweeps)
    error = "test"
    for sweep in sweeps:
        runs = load_runs(Path(sweep) / "results.jsonl")
        if runs:
            error = error_name(runs[0].config)
            break
    sources = ", ".join(f"`{s}`" for s in sweeps)
    text = f"# The GN–BN gap against training length\n\nFrom the finished runs of {sources}.\n\n" + markdown(
        rows, error
    )
    text += "\n![gap against epochs](gap_vs_epochs.png)\n"
    plot(rows, out / "gap_vs_epochs.png")
    path = out / "gap-vs-epochs.md"
    atomic_write_text(path, text)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m groupnorm.repro.training_length", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "sweeps", nargs="+", help="sweep directories (each with results.jsonl) differing in epochs"
    )
    p.add_argument("--out", required=True, help="where gap-vs-epochs.md and gap_vs_epochs.png go")
    args = p.parse_args(argv)
    for s in args.sweeps:
        if not (Path(s) / "results.jsonl").is_file():
            p.error(f"sweeps: {s} has no results.jsonl")
    print(write(args.sweeps, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
