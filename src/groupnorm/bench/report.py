"""Benchmark output: machine and versions, a markdown table, CSV and JSON (written atomically)."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import torch

from groupnorm.repro.runtime import atomic_write_text


def environment(device: str) -> dict:
    """Machine and version fields recorded with every result."""
    from groupnorm import machine
    from groupnorm._version import __version__

    on_cpu = torch.device(device).type == "cpu"
    env = {
        "groupnorm_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        **machine.describe(kernels=on_cpu),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if torch.device(device).type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
        env["cuda_version"] = torch.version.cuda
        try:
            import triton

            env["triton_version"] = triton.__version__
        except ImportError:
            env["triton_version"] = None
    else:
        from groupnorm.ops.cpu import loader

        env["cpu_kernel"] = "compiled" if loader.available() else f"torch fallback ({loader.error()})"
    return env


def ratio_text(paired: float, baseline_ms: float | None, ours_ms: float | None) -> str:
    """A speed-up for a headline: the paired ratio (median over rounds of baseline / ours), unless the ratio of the
    two medians points the other way, which means the difference is within the rounds' noise.

    Example::

        >>> ratio_text(1.05, 15585.0, 15849.0)
        'no difference within noise (1.05x paired, 0.98x of medians)'
        >>> ratio_text(1.05, 16000.0, 15200.0)
        '1.05x'
    """
    if baseline_ms and ours_ms:
        of_medians = baseline_ms / ours_ms
        if (paired - 1.0) * (of_medians - 1.0) < 0:
            return f"no difference within noise ({paired:.2f}x paired, {of_medians:.2f}x of medians)"
    return f"{paired:.2f}x"


def write_json(path: str | Path, records: list[dict]) -> None:
    atomic_write_text(path, json.dumps(records, indent=1) + "\n")


def read_json(path: str | Path) -> list[dict]:
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


CSV_FIELDS = [
    "provider", "mode", "layout", "dtype", "shape_name", "shape", "groups", "activation", "residual",
    "median_ms", "min_ms", "gbps", "copy_gbps", "pct_copy", "ratio_vs_torch", "ratio_vs_torch_paired",
    "ratio_vs_torch_best", "roofline",
    "pct_roofline", "median_cpu_ms", "ratio_vs_torch_cpu", "bytes",
    "rounds", "error",
]  # fmt: skip


def to_csv(records: list[dict]) -> str:
    buf = io.StringIO()
    fields = CSV_FIELDS + sorted({k for r in records for k in r} - set(CSV_FIELDS))
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for r in records:
        row = dict(r)
        row["shape"] = "x".join(str(d) for d in r.get("shape", []))
        writer.writerow(row)
    return buf.getvalue()


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown_table(records: list[dict]) -> str:
    """One row per (case, provider): time, GB/s, % of copy, ratio to torch."""
    lines = [
        "| shape | layout | dtype | act | res | mode | provider | ms | GB/s | copy GB/s | % copy | roofline "
        "| vs torch |",
        "|---|---|---|---|---|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in records:
        roof = r.get("roofline") or "-"
        if r.get("pct_roofline") is not None:
            roof = f"{roof} {r['pct_roofline']:.0f}%"
        lines.append(
            f"| {r['shape_name']} {'x'.join(map(str, r['shape']))} | {r['layout']} | {r['dtype']} "
            f"| {r['activation']} | {'y' if r['residual'] else 'n'} | {r['mode']} | {r['provider']} "
            f"| {_fmt(r.get('median_ms'), '.3f')} | {_fmt(r.get('gbps'), '.1f')} | {_fmt(r.get('copy_gbps'), '.1f')} "
            f"| {_fmt(r.get('pct_copy'), '.0f')} | {roof} | {_fmt(r.get('ratio_vs_torch'), '.2f')} |"
        )
    return "\n".join(lines)


def _median(v: list[float]) -> float:
    v = sorted(v)
    return v[len(v) // 2] if len(v) % 2 else 0.5 * (v[len(v) // 2 - 1] + v[len(v) // 2])


def summary(records: list[dict], provider: str = "groupnorm") -> str:
    """Median ratio vs torch per (mode, layout, activation, dtype), the form the targets are stated in.

    ``median`` uses each case's median time, ``paired`` each case's median over rounds of the per-round ratio (both
    providers timed in the same round, so a slow moment of the machine cancels), ``best-round`` each case's fastest
    round (the least disturbed on a shared machine), ``CPU time`` the CPU seconds (all threads) per call instead of
    wall time.
    """
    groups: dict[tuple, list[tuple]] = {}
    for r in records:
        if r["provider"] == provider and r.get("ratio_vs_torch") is not None:
            key = (r["mode"], r["layout"], r["activation"], r["dtype"])
            groups.setdefault(key, []).append(
                (
                    r["ratio_vs_torch"],
                    r.get("ratio_vs_torch_best"),
                    r.get("ratio_vs_torch_cpu"),
                    r.get("ratio_vs_torch_paired"),
                )
            )
    if not groups:
        return ""
    lines = [
        f"| mode | layout | act | dtype | cases | {provider}/torch speed-up (median) | min | max | paired "
        "| best-round | CPU time |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def med_or_dash(values: list) -> str:
        values = [v for v in values if v is not None]
        return f"{_median(values):.2f}x" if values else "-"

    for key in sorted(groups):
        med = [m for m, _, _, _ in groups[key]]
        best = med_or_dash([b for _, b, _, _ in groups[key]])
        cpu = med_or_dash([c for _, _, c, _ in groups[key]])
        paired = med_or_dash([p for _, _, _, p in groups[key]])
        lines.append(
            f"| {' | '.join(key)} | {len(med)} | {_median(med):.2f}x | {min(med):.2f}x | {max(med):.2f}x "
            f"| {paired} | {best} | {cpu} |"
        )
    return "\n".join(lines)


def markdown_report(records: list[dict], command: str) -> str:
    """A results page: the command, the machine and versions, the speed-up summary and the full table."""
    from groupnorm.machine import FIELDS

    env_keys = [*FIELDS, "torch_threads", "device", "gpu", "torch_version", "triton_version",
                "groupnorm_version", "python_version", "platform", "cpu_kernel", "malloc"]  # fmt: skip
    first = records[0] if records else {}
    loads = sorted({r.get("load_avg_1m") for r in records if r.get("load_avg_1m") is not None})
    stamps = sorted({r.get("timestamp") for r in records if r.get("timestamp")})
    lines = [
        "# Kernel benchmark",
        "",
        "Command:",
        "",
        "```",
        command,
        "```",
        "",
        "| field | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {first[k]} |" for k in env_keys if first.get(k) is not None]
    if stamps:
        lines.append(f"| run | {stamps[0]} .. {stamps[-1]} |")
    if loads:
        lines.append(f"| 1-minute load average at start of run(s) | {', '.join(str(v) for v in loads)} |")
    for name, error in (first.get("providers_not_loaded") or {}).items():
        cell = error.replace("|", "&#124;")  # a bare | would end the table cell
        lines.append(f"| provider {name} not loaded | {cell} |")
    lines += [
        "",
        "## Speed-up over torch eager",
        "",
        summary(records),
        "",
        "## All rows",
        "",
        markdown_table(records),
    ]
    return "\n".join(lines) + "\n"
