"""``report.md`` and plots from a sweep directory (only its ``results.jsonl`` is required).

Tables in the paper's style: the evaluation error (validation or test, named by the run's evaluation set) per
norm × images per device (mean ± std over seeds, Δ vs BN, the paper's ImageNet number beside ours), training
error, time per epoch, the group ablation; plots of error vs batch size (Figure 1), training/validation curves
(Figure 4) and the group ablation; a plain statement of where our outcome agrees with the paper and where it does
not. :func:`summary_tables` gives the two tables a README shows.

Example::

    path = write_report("runs/demo")   # -> runs/demo/report.md (+ fig1_error_vs_batch.png, ...)
"""

from __future__ import annotations

import json
import os
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from groupnorm.repro import paper
from groupnorm.repro.classification import final_epochs
from groupnorm.repro.data import HELD_OUT_EVAL_DATASETS
from groupnorm.repro.runtime import atomic_write_text

NORM_ORDER = ["bn", "syncbn", "gn", "gn+ws", "ln", "in", "none"]
COLORS = {"bn": "C0", "gn": "C1", "ln": "C2", "in": "C3", "syncbn": "C4", "gn+ws": "C5", "none": "C7"}
NORM_NAMES = {
    "bn": "BN",
    "syncbn": "SyncBN",
    "gn": "GN",
    "gn+ws": "GN+WS",
    "ln": "LN",
    "in": "IN",
    "none": "none",
}


@dataclass
class Run:
    run: str
    config: dict
    records: list[dict]

    @property
    def finished(self) -> bool:
        return len(self.records) >= self.config["epochs"]

    def final(self, key: str) -> float:
        return statistics.median(r[key] for r in self.records[-final_epochs(self.config["epochs"]) :])

    @property
    def label(self) -> str:
        return norm_label(self.config)


def error_name(config: dict) -> str:
    """``"test"`` when a run was scored on its data set's test split, ``"validation"`` when on held-out training
    images (``val_split``, or a data set without a test split such as ``digits``)."""
    if config.get("val_split") or config.get("dataset") in HELD_OUT_EVAL_DATASETS:
        return "validation"
    return "test"


def norm_label(config: dict) -> str:
    """``gn`` for the default grouping, ``gn G=16`` or ``gn 16ch`` for an explicit one."""
    n = config["norm"]
    if config.get("groups") is not None:
        return f"{n} G={config['groups']}"
    if config.get("group_size") is not None:
        return f"{n} {config['group_size']}ch"
    return n


def load_runs(path: str | os.PathLike) -> list[Run]:
    """Group the epoch records of ``results.jsonl`` by run (a later record of an epoch replaces an earlier one)."""
    by_run: dict[str, dict[int, dict]] = defaultdict(dict)
    configs: dict[str, dict] = {}
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        by_run[r["run"]][r["epoch"]] = r
        configs[r["run"]] = r["config"]
    return [Run(k, configs[k], [v[e] for e in sorted(v)]) for k, v in by_run.items()]


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value) of a cell's seeds."""
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


def format_mean_std(mean: float, std: float | None) -> str:
    """``12.34 ± 0.56``, or ``12.34`` without a spread."""
    return f"{mean:.2f}" + (f" ± {std:.2f}" if std is not None else "")


def _label_sort_key(label: str) -> tuple:
    base = label.split(" ")[0]
    rank = NORM_ORDER.index(base) if base in NORM_ORDER else len(NORM_ORDER)
    return (rank, label)


def cells(runs: list[Run], key: str) -> dict[tuple[str, int], tuple[float, float | None, int]]:
    """(label, b) -> (mean, std, seeds) of a run's final ``key`` over seeds."""
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in runs:
        groups[(r.label, r.config["batch_per_device"])].append(r.final(key))
    return {k: (*mean_std(v), len(v)) for k, v in groups.items()}


def _table(rows: list[str], cols: list[int], cell) -> str:
    head = "| norm | " + " | ".join(f"b={b}" for b in cols) + " |"
    sep = "|---|" + "---|" * len(cols)
    lines = [head, sep]
    for label in rows:
        lines.append(f"| {_display(label)} | " + " | ".join(cell(label, b) for b in cols) + " |")
    return "\n".join(lines)


def _base(label: str) -> str:
    return label.split(" ")[0]


def _main_labels(labels: list[str], batches: dict[str, set[int]] | None = None) -> list[str]:
    """One row per norm for the main tables: its default grouping, its only grouping, or else the grouping run
    at the most batch sizes (a sweep whose group ablation runs at 32 images/device only)."""
    main = []
    batches = batches or {}
    for base in dict.fromkeys(_base(lb) for lb in labels):
        variants = [lb for lb in labels if _base(lb) == base]
        if base in variants:
            main.append(base)
        elif len(variants) == 1:
            main.append(variants[0])
        else:
            counts = sorted((len(batches.get(lb, ())), lb) for lb in variants)
            if len(counts) > 1 and counts[-1][0] > counts[-2][0]:
                main.append(counts[-1][1])
    return main


def _display(label: str) -> str:
    base, *rest = label.split(" ")
    return " ".join([NORM_NAMES.get(base, base), *rest])


def write_report(out: str | os.PathLike, results: str | os.PathLike | None = None) -> Path:
    """Write ``report.md`` and PNG plots into ``out`` from ``results`` (default ``out/results.jsonl``)."""
    out = Path(out)
    results = Path(results) if results else out / "results.jsonl"
    if not results.exists():
        raise FileNotFoundError(f"no results file {results}: run a sweep with --out {out} first")
    runs = [r for r in load_runs(results) if r.records]
    if not runs:
        raise ValueError(f"{results} holds no epoch records yet")
    meta_path = out / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    finished = [r for r in runs if r.finished]
    unfinished = [r for r in runs if not r.finished]
    shown = finished or runs
    val = cells(shown, "val_error")
    train = cells(shown, "train_error")
    secs = cells(shown, "seconds")
    speed = cells([r for r in shown if all("images_per_second" in x for x in r.records)], "images_per_second")
    labels = sorted({k[0] for k in val}, key=_label_sort_key)
    bs = sorted({k[1] for k in val}, reverse=True)
    batches_of: dict[str, set[int]] = defaultdict(set)
    for label, b in val:
        batches_of[label].add(b)
    main_labels = _main_labels(labels, batches_of)
    ablation_labels, ablation_bs = _ablation(labels, main_labels, batches_of)
    # the main rows keyed by their norm alone ("gn" for "gn G=8" when that is the sweep's only GN grouping)
    main_val = {(_base(lb), b): v for (lb, b), v in val.items() if lb in main_labels}
    cfg = shown[0].config

    def val_cell(label: str, b: int) -> str:
        if (label, b) not in val:
            return "—"
        m, s, _ = val[(label, b)]
        text = format_mean_std(m, s)
        if _base(label) != "bn" and ("bn", b) in main_val:
            text += f" ({m - main_val[('bn', b)][0]:+.2f})"
        p = paper.paper_error(_base(label), b) if label in main_labels else None
        if p is not None:
            text += f" · paper {p:.1f}"
        return text

    def plain_cell(table):
        return lambda label, b: format_mean_std(*table[(label, b)][:2]) if (label, b) in table else "—"

    md = [f"# Group Normalization reproduction: {cfg['dataset']}, {cfg['model']}", ""]
    if meta.get("command"):
        md += ["Made by:", "", "```", meta["command"], "```", ""]
    if (out / "BUDGET.md").exists():
        md += [
            "How the recipe was chosen (on held-out training images) and what the grid costs: [BUDGET.md](BUDGET.md).",
            "",
        ]
    seeds = max(v[2] for v in val.values())
    error = error_name(cfg)
    evaluated_on = (
        f"{cfg['val_split']} training images held out of training"
        if cfg.get("val_split")
        else ("the data set's held-out split" if error == "validation" else "the data set's test split")
    )
    md += [
        f"Setting: {cfg['dataset']} ({cfg.get('train_subset') or 'all'} training images), {cfg['model']} "
        f"(width ×{cfg.get('width', 1)}), {cfg['devices']} virtual devices, {cfg['epochs']} epochs, "
        f"{cfg['schedule']} schedule, base LR {cfg['base_lr']} for 32 images/device scaled linearly, "
        f"weight decay {cfg['weight_decay']}, {_recipe(cfg)}, up to {seeds} seed(s) per cell. "
        f"{error.capitalize()} error (on {evaluated_on}) is the median of "
        f"the last {final_epochs(cfg['epochs'])} epoch(s) (the paper's last 5 of 100 epochs, scaled: the last 5 %), "
        f"in %. Paper numbers: {paper.SETTING}.",
        "",
    ]
    if unfinished:
        md += [
            f"**{len(unfinished)} run(s) unfinished** — tables use finished runs only."
            if finished
            else "**No run has finished yet** — numbers are from the epochs done so far.",
            "",
        ]
    groupings = sorted({r.config.get("grouping", "") for r in shown if r.config["norm"] in ("gn", "gn+ws")})
    if groupings:
        md += ["GN grouping used: " + "; ".join(f"`{g}`" for g in groupings if g), ""]

    md += [
        f"## {error.capitalize()} error (%) by images per device",
        "",
        "Mean ± std over seeds; (Δ vs BN at the same batch); the paper's ImageNet number where it has one.",
        "",
    ]
    md += [_table(main_labels, bs, val_cell), "", "![error vs batch](fig1_error_vs_batch.png)", ""]
    md += ["## Training error (%)", "", _table(main_labels, bs, plain_cell(train)), ""]
    md += ["![curves](fig4_curves.png)", ""]
    md += [
        "## Seconds per epoch",
        "",
        "Wall time per epoch, evaluation included; on a shared machine it follows the "
        "other load as much as the norm.",
        "",
        _table(labels, bs, plain_cell(secs)),
        "",
    ]
    if speed:
        md += [
            "## Training images per second",
            "",
            "Images trained per second of an epoch's training loop (evaluation excluded), median of the last "
            f"{final_epochs(cfg['epochs'])} epoch(s), mean over seeds; one run per process, as the sweep ran them.",
            "",
            _table(
                labels, bs, lambda label, b: f"{speed[(label, b)][0]:.0f}" if (label, b) in speed else "—"
            ),
            "",
        ]
    if ablation_labels:
        md += _ablation_section(val, ablation_labels, ablation_bs)
    md += ["## Against the paper", ""] + [f"- {line}" for line in findings(main_val, bs)] + [""]
    machine = meta.get("machine") or shown[0].records[-1].get("machine")
    if machine:
        md += ["## Machine", "", "```", json.dumps(machine, indent=1, sort_keys=True), "```", ""]
    md += [
        "Files: `results.jsonl` (every epoch of every run), `summary.csv` (one row per run), `runs/<run>/`.",
        "",
    ]

    _plots(out, shown, val, main_labels, ablation_labels, bs, ablation_bs)
    path = out / "report.md"
    atomic_write_text(path, "\n".join(md))
    return path


def report_summary(report: str | os.PathLike) -> str:
    """The part of a ``report.md`` a terminal shows: the error table and the comparison with the paper."""
    text = Path(report).read_text()
    keep = []
    for section in text.split("\n## ")[1:]:
        title = section.split("\n", 1)[0]
        if title.endswith("error (%) by images per device") or title.startswith("Against the paper"):
            body = [ln for ln in section.splitlines()[1:] if not ln.startswith("![")]
            keep.append("\n".join([title, *body]).strip())
    return "\n\n".join(keep) + "\n"


def summary_tables(out: str | os.PathLike) -> str:
    """The tables a README shows for a sweep: error by images per device (Figure 1), by norm at the largest batch
    (Table 1) and, when the sweep has a group ablation, by group count and by channels per group (Table 3), mean
    ± std over the finished runs' seeds; cells the sweep plans but has not finished read ``pending``.

    Example::

        print(summary_tables("docs/results/cifar10-cpu"))
    """
    out = Path(out)
    finished = [r for r in load_runs(out / "results.jsonl") if r.records and r.finished]
    meta_path = out / "meta.json"
    sweep = json.loads(meta_path.read_text()).get("sweep", {}) if meta_path.exists() else {}
    val = cells(finished, "val_error")
    cfg = (finished[0].config if finished else sweep.get("base")) or {}
    bs = sorted(set(sweep.get("batch_per_device", [])) | {b for _, b in val}, reverse=True)
    main = _main_labels(
        sorted({lb for lb, _ in val}, key=_label_sort_key),
        {lb: {b for lb2, b in val if lb2 == lb} for lb, _ in val},
    )
    main_by_base = {_base(lb): lb for lb in main}
    planned = sweep.get("norms") or [_base(lb) for lb in main]
    only_at = sweep.get("batch_for_norm", {})

    def cell(norm: str, b: int) -> str:
        label = main_by_base.get(norm)
        if label is None or (label, b) not in val:
            return "pending"
        m, s, _ = val[(label, b)]
        return format_mean_std(m, s)

    def name(norm: str) -> str:
        return _display(main_by_base.get(norm, norm))

    seeds = max((v[2] for v in val.values()), default=0)
    title = (
        f"{error_name(cfg)} error (%), {cfg.get('dataset')}, {cfg.get('model')}, {cfg.get('epochs')} epochs"
    )
    if seeds > 1:
        title += f", ± std over up to {seeds} seeds"
    figure1 = [n for n in planned if n not in only_at]
    lines = [f"| {title} | " + " | ".join(f"{b} / device" for b in bs) + " |", "|---|" + "---|" * len(bs)]
    lines += [f"| {name(n)} | " + " | ".join(cell(n, b) for b in bs) + " |" for n in figure1]
    if bs and len(planned) > len(figure1):
        big = bs[0]
        lines += ["", f"| at {big} / device | " + " | ".join(name(n) for n in planned) + " |"]
        lines += ["|---|" + "---|" * len(planned)]
        lines += [f"| {error_name(cfg)} error (%) | " + " | ".join(cell(n, big) for n in planned) + " |"]
    batches_of: dict[str, set[int]] = defaultdict(set)
    for label, b in val:
        batches_of[label].add(b)
    ablation, ablation_bs = _ablation(sorted(batches_of, key=_label_sort_key), main, batches_of)
    by_count = [lb for lb in ablation if " G=" in lb]
    by_size = [lb for lb in ablation if lb.endswith("ch")]
    for by, chosen, ref in (
        ("group count", by_count, paper.BY_GROUPS),
        ("channels per group", by_size, paper.BY_GROUP_SIZE),
    ):
        if not chosen or not ablation_bs:
            continue
        b = ablation_bs[0]
        groupings = [lb.split(" ", 1)[1] for lb in chosen]
        refs = [ref.get(int(g[2:] if g.startswith("G=") else g[:-2])) for g in groupings]
        lines += ["", f"| GN at {b} / device, by {by} | " + " | ".join(groupings) + " |"]
        lines += ["|---|" + "---|" * len(chosen)]
        lines += [
            f"| {error_name(cfg)} error (%) | "
            + " | ".join(format_mean_std(*val[(lb, b)][:2]) if (lb, b) in val else "pending" for lb in chosen)
            + " |"
        ]
        lines += ["| paper (ImageNet) | " + " | ".join("—" if r is None else f"{r}" for r in refs) + " |"]
    return "\n".join(lines) + "\n"


def _recipe(cfg: dict) -> str:
    shortcut = {"conv": "1×1-convolution shortcuts", "pad": "zero-padded identity shortcuts"}.get(
        cfg.get("shortcut", "pad"), f"{cfg.get('shortcut')} shortcuts"
    )
    init = "γ = 0 in each block's last norm" if cfg.get("zero_init_last", True) else "γ = 1 in every norm"
    return f"{shortcut}, {init}"


def _ablation(
    labels: list[str], main_labels: list[str], batches_of: dict[str, set[int]]
) -> tuple[list[str], list[int]]:
    """The group ablation's rows in Table 3's order, and the batch sizes it ran at; the main GN grouping is one
    point of the ablation there too (no rows when the sweep has no ablation)."""
    ablation = [lb for lb in labels if lb not in main_labels]
    ablation_bs = sorted({b for lb in ablation for b in batches_of[lb]}, reverse=True)
    if ablation:
        ablation = sorted(
            ablation + [lb for lb in main_labels if _base(lb) == "gn" and " " in lb], key=_ablation_sort_key
        )
    return ablation, ablation_bs


def _ablation_sort_key(label: str) -> tuple:
    """Group counts from many to few, then channels per group from few to many (Table 3's order)."""
    base, _, grouping = label.partition(" ")
    if grouping.startswith("G="):
        return (_label_sort_key(base), 0, -int(grouping[2:]))
    if grouping.endswith("ch"):
        return (_label_sort_key(base), 1, int(grouping[:-2]))
    return (_label_sort_key(base), 2, 0)


def _ablation_section(val: dict, labels: list[str], bs: list[int]) -> list[str]:
    md = ["## Group ablation (Table 3)", "", "| grouping | b | ours | paper (b=32) |", "|---|---|---|---|"]
    for label in labels:
        for b in bs:
            if (label, b) not in val:
                continue
            m, s, _ = val[(label, b)]
            kind, value = label.split(" ")[1].split("=") if "=" in label else ("ch", label.split(" ")[1][:-2])
            ref = (paper.BY_GROUPS if kind == "G" else paper.BY_GROUP_SIZE).get(int(value))
            md.append(
                f"| {_display(label)} | {b} | {format_mean_std(m, s)} | {ref if ref is not None else '—'} |"
            )
    return md + ["", "![group ablation](fig_groups.png)", ""]


def _gap_verdict(d: float, paper_d: float) -> str:
    """Whether our GN − BN at a batch size agrees with the paper's at the same batch size: where the paper has GN
    clearly ahead (by a point or more), GN must be ahead here; where the two are close in the paper, GN must be
    within [-1, +2] points of BN here."""
    if paper_d <= -1.0:
        return "agrees" if d < 0 else "does NOT agree"
    if -1.0 <= d <= 2.0:
        return "agrees"
    return "does NOT agree: GN is much worse" if d > 2 else "differs: GN is clearly better"


def findings(val: dict, bs: list[int]) -> list[str]:
    """Plain sentences: what the paper found, and whether ours agrees, for the cells this run has, each compared
    with the paper at the same images per device (a run at one batch size gets one comparison, not two)."""
    lines = []
    big, small = (max(bs), min(bs)) if bs else (None, None)
    has = lambda n, b: (n, b) in val  # noqa: E731
    err = lambda n, b: val[(n, b)][0]  # noqa: E731
    if big != small and has("bn", big) and has("bn", small):
        d = err("bn", small) - err("bn", big)
        pb, ps = paper.paper_error("bn", big), paper.paper_error("bn", small)
        ref = (
            f"paper {big}→{small}: {ps - pb:+.1f}"
            if pb is not None and ps is not None
            else "not in the paper"
        )
        verdict = "agrees" if d > 1.0 else "does NOT reproduce this"
        lines.append(
            f"BN from b={big} to b={small}: {d:+.2f} points here ({ref}). "
            f"The paper's BN degrades at small batches; ours {verdict}."
        )
    if has("gn", big) and has("gn", small) and big != small:
        gn = [err("gn", b) for b in bs if has("gn", b)]
        spread = max(gn) - min(gn)
        verdict = "agrees" if spread <= 2.0 else "does NOT agree (spread above 2 points)"
        lines.append(
            f"GN across b={big}…{small}: spread {spread:.2f} points (paper: 0.2). The paper's GN is "
            f"insensitive to the batch size; ours {verdict}."
        )
    for b in sorted({small, big} - {None}):
        paper_gn, paper_bn = paper.paper_error("gn", b), paper.paper_error("bn", b)
        if not (has("gn", b) and has("bn", b)) or paper_gn is None or paper_bn is None:
            continue  # the paper states GN − BN only at its own batch sizes
        d, paper_d = err("gn", b) - err("bn", b), paper_gn - paper_bn
        lines.append(
            f"At b={b}, GN − BN = {d:+.2f} points (paper at b={b}: {paper_d:+.1f}); ours {_gap_verdict(d, paper_d)}."
        )
    for b in sorted({small, big} - {None}):
        if has("gn+ws", b) and has("bn", b):
            lines.append(
                f"At b={b}, GN+WS − BN = {err('gn+ws', b) - err('bn', b):+.2f} points (not in the paper, whose "
                "GN runs without Weight Standardization)."
            )
    if big is not None and all(has(n, big) for n in ("gn", "ln", "in")):
        order = sorted(("gn", "ln", "in"), key=lambda n: err(n, big))
        verdict = "agrees" if order == ["gn", "ln", "in"] else "does NOT agree"
        lines.append(
            f"At b={big} the order is {' < '.join(NORM_NAMES[n] for n in order)} "
            f"(paper: GN 24.1 < LN 25.3 < IN 28.4); ours {verdict}."
        )
    if not lines:
        lines.append("This sweep has no cell that the paper's comparisons apply to.")
    return lines


def _plots(
    out: Path,
    runs: list,
    val: dict,
    labels: list[str],
    ablation: list[str],
    bs: list[int],
    ablation_bs: list[int],
) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is in the repro extra
        return

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label in labels:
        pts = [(b, *val[(label, b)][:2]) for b in bs if (label, b) in val]
        if not pts:
            continue
        x, m, s = zip(*pts)
        color = COLORS.get(_base(label))
        ax.errorbar(x, m, yerr=[v or 0 for v in s], marker="o", capsize=3, label=_display(label), color=color)
    for norm in ("bn", "gn"):
        style = COLORS[norm]
        pts = sorted(paper.BY_BATCH[norm].items())
        ax.plot(
            *zip(*pts), linestyle=":", color=style, alpha=0.5, label=f"paper {NORM_NAMES[norm]} (ImageNet)"
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(bs, [str(b) for b in bs])
    ax.invert_xaxis()
    ax.set_xlabel("images per device")
    ax.set_ylabel(f"{error_name(runs[0].config)} error (%)")
    ax.set_title("Error vs batch size (Figure 1)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "fig1_error_vs_batch.png", dpi=120)
    plt.close(fig)

    # Figure 4: curves at the largest and the smallest batch, first seed of each norm.
    panels = [b for b in (max(bs), min(bs)) if b is not None]
    panels = sorted(set(panels), reverse=True)
    fig, axes = plt.subplots(len(panels), 2, figsize=(10, 3.4 * len(panels)), squeeze=False)
    for row, b in enumerate(panels):
        for label in labels:
            chosen = [r for r in runs if r.label == label and r.config["batch_per_device"] == b]
            if not chosen:
                continue
            r = min(chosen, key=lambda r: r.config["seed"])
            ep = [x["epoch"] for x in r.records]
            axes[row][0].plot(ep, [x["train_error"] for x in r.records], label=_display(label))
            axes[row][1].plot(ep, [x["val_error"] for x in r.records], label=_display(label))
        for col, what in enumerate(("train error (%)", "val error (%)")):
            axes[row][col].set_title(f"{what}, b={b}")
            axes[row][col].set_xlabel("epoch")
            axes[row][col].grid(alpha=0.3)
            if axes[row][col].get_legend_handles_labels()[0]:
                axes[row][col].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "fig4_curves.png", dpi=110)
    plt.close(fig)

    if ablation:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        keys = [(lb, b) for lb in ablation for b in ablation_bs if (lb, b) in val]
        ax.bar(range(len(keys)), [val[k][0] for k in keys], yerr=[val[k][1] or 0 for k in keys], capsize=3)
        ax.set_xticks(range(len(keys)), [f"{_display(lb)}\nb={b}" for lb, b in keys], fontsize=7)
        ax.set_ylabel(f"{error_name(runs[0].config)} error (%)")
        ax.set_title("Group ablation (Table 3)")
        fig.tight_layout()
        fig.savefig(out / "fig_groups.png", dpi=110)
        plt.close(fig)


def write_page(out: Path, lines: list[str], meta: dict) -> Path:
    """Write ``out/report.md``: ``lines`` and, as its last line, the machine of ``meta`` (the transfer reports)."""
    from groupnorm.machine import one_line

    if meta.get("machine"):
        lines = [*lines, "", f"Machine: {one_line(meta['machine'])}."]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
