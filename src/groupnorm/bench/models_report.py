"""Output of the whole-model benchmark (:mod:`groupnorm.bench.models`): a markdown table and a results page.

Example::

    >>> row = dict(model="unet2d", layout="nchw", stock_ms=10.0, patched_ms=8.0, ratio_median=1.25,
    ...            ratio_min=1.2, ratio_max=1.3, patch_swapped=3, patch_fused=2, patch_left=1,
    ...            patch_fused_activations={"silu": 2}, skipped=None, error=None)
    >>> print(markdown_table([row]).splitlines()[-1])
    | unet2d | nchw | 10.0 | 8.0 | 1.25x | 1.20-1.30x | 2 fused (silu 2), 3 swapped, 1 left |
"""

from __future__ import annotations

import importlib

from groupnorm.bench.report import ratio_text
from groupnorm.machine import FIELDS

COLUMNS = ["model", "layout", "stock ms", "patched ms", "ratio median", "ratio spread", "what patch fused"]
ENV_KEYS = [*FIELDS, "torch_threads", "device", "gpu", "torch_version", "triton_version",
            "diffusers_version", "timm_version", "torchvision_version", "groupnorm_version", "python_version",
            "platform", "cpu_kernel", "malloc"]  # fmt: skip


def library_versions() -> dict:
    """Versions of the model libraries (None where one is not installed)."""
    versions = {}
    for name in ("diffusers", "timm", "torchvision"):
        try:
            versions[f"{name}_version"] = importlib.import_module(name).__version__
        except ImportError:
            versions[f"{name}_version"] = None
    return versions


def _ms(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def _fused(row: dict) -> str:
    if row.get("skipped"):
        return f"skipped: {row['skipped']}"
    if row.get("error"):
        return f"refused: {row['error']}"
    acts = ", ".join(f"{k} {v}" for k, v in sorted((row.get("patch_fused_activations") or {}).items()))
    fused = f"{row['patch_fused']} fused" + (f" ({acts})" if acts else "")
    return f"{fused}, {row['patch_swapped']} swapped, {row['patch_left']} left"


def markdown_table(rows: list[dict]) -> str:
    """One line per (model, layout): median times, the median and range of the per-round stock/patched ratio,
    and the patch report's counts (or why the row has no timings)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        timed = r.get("ratio_median") is not None
        ratio = ratio_text(r["ratio_median"], r.get("stock_ms"), r.get("patched_ms")) if timed else "-"
        spread = f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f}x" if timed else "-"
        lines.append(
            f"| {r['model']} | {r['layout']} | {_ms(r.get('stock_ms'))} | {_ms(r.get('patched_ms'))} "
            f"| {ratio} | {spread} | {_fused(r)} |"
        )
    return "\n".join(lines)


def norm_share_table(rows: list[dict]) -> str:
    """For profiled rows (``--profile``): each model's milliseconds per call by operator kind, stock and patched,
    the share of stock's time in norms and their activations, and the ratio the patched model would reach if only
    those had changed (what the norm kernel alone can give the model); empty when no row was profiled."""
    profiled = [r for r in rows if r.get("stock_kinds_ms") and r.get("patched_kinds_ms")]
    if not profiled:
        return ""
    kinds = list(profiled[0]["stock_kinds_ms"])
    lines = [
        "| model | layout | run | "
        + " | ".join(kinds)
        + " | norm + activation share | ratio if only norms changed |",
        "|---|---|---|" + "---:|" * (len(kinds) + 2),
    ]
    for r in profiled:
        stock, patched = r["stock_kinds_ms"], r["patched_kinds_ms"]
        stock_total = sum(stock.values())
        norm_act = ("norm", "activation")
        stock_norm = sum(stock.get(k, 0.0) for k in norm_act)
        patched_norm = sum(patched.get(k, 0.0) for k in norm_act)
        bound = stock_total / max(stock_total - stock_norm + patched_norm, 1e-9)
        for name, ms in (("stock", stock), ("patched", patched)):
            share = f"{100 * stock_norm / stock_total:.1f}%" if name == "stock" else "-"
            ceiling = f"{bound:.2f}x" if name == "patched" else "-"
            lines.append(
                f"| {r['model']} | {r['layout']} | {name} | "
                + " | ".join(f"{ms.get(k, 0.0):.1f}" for k in kinds)
                + f" | {share} | {ceiling} |"
            )
    return "\n".join(lines)


def markdown_page(rows: list[dict], command: str) -> str:
    """A results page: the command, machine and versions, the table, and what each model runs."""
    first = rows[0] if rows else {}
    lines = [
        "# Whole-model benchmark: stock vs `groupnorm.patch`",
        "",
        "Command:",
        "",
        "```",
        command,
        "```",
        "",
    ]
    lines += ["| field | value |", "|---|---|"]
    lines += [f"| {k} | {first[k]} |" for k in ENV_KEYS if first.get(k) is not None]
    if first.get("timestamp"):
        lines.append(f"| started | {first['timestamp']} |")
    if first.get("load_avg_1m") is not None:
        lines.append(f"| 1-minute load average at start | {first['load_avg_1m']} |")
    lines += [
        "",
        "Both models have the same random weights and run on the same input tensors, timed in interleaved "
        "rounds. Times are medians over rounds; the ratio is stock time / patched time (above 1: the patched "
        "model is faster), per round, with its median and its spread (lowest to highest round). A row is timed "
        "only after the patched output (and in training the loss and every gradient) matched stock within "
        "float32 tolerance. The counts are the patch report's, for the modules the timed call runs.",
        "",
        markdown_table(rows),
        "",
    ]
    profile = norm_share_table(rows)
    if profile:
        lines += [
            "## Where the time goes",
            "",
            "Milliseconds per call by operator kind (self CPU time of profiled calls after the timing; `python` is "
            "wall time outside any operator). The norm + activation share is stock's; the last column is "
            "stock's total over stock's total with only its norm and activation time replaced by the patched "
            "model's: the most the norm kernel can give this model, whatever else the patch changes.",
            "",
            profile,
            "",
        ]
    lines += [
        "## Models",
        "",
    ]
    seen = set()
    for r in rows:
        if r["model"] not in seen:
            seen.add(r["model"])
            inputs = ", ".join("x".join(map(str, s)) for s in r.get("inputs") or [])
            lines.append(
                f"- `{r['model']}` ({r['mode']}): {r['description']}"
                + (f"; inputs {inputs}" if inputs else "")
            )
    return "\n".join(lines) + "\n"
