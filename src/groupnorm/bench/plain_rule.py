"""Which plain float32 CPU calls the kernels serve, derived from committed kernels-vs-torch measurements.

A plain call (no activation, residual or scale/shift) has nothing to fuse: the kernels can only win on their
memory traffic, and torch's own CPU ``group_norm`` is close to them or ahead on some CPUs (0.76-0.88x in NCHW
forward on an AVX-512 Xeon, while 0.80-1.40x on an AMD EPYC). So a plain call runs the kernels only where they
were at least as fast as torch on every CPU measured; elsewhere ``groupnorm.group_norm`` hands it to torch.

The measurements are ``groupnorm bench --preset quick`` runs with the kernels forced (``GROUPNORM_CPU_SMALL_NUMEL=0``,
so the rule itself does not route them), one or more per CPU, listed in :data:`SOURCES`. :func:`derive` turns them
into the rule: for each layout class and mode, ``"kernels"`` where every case won on every CPU, ``"torch"`` where
none did or the winners and losers do not separate by size, else the largest per-sample size (bytes) up to which
every case won (the kernels' advantage fades where a sample no longer fits in cache). ``scripts/plain_routing.py``
writes it to ``groupnorm/ops/plain_routing.json``, which :mod:`groupnorm.ops.routing` reads; ``tests`` check that
the packaged rule is what the committed measurements give.

Example::

    >>> case = {"layout": "channels_last", "shape": [2, 8, 4, 4], "mode": "fwd", "activation": "none",
    ...         "residual": False, "dtype": "float32"}
    >>> layout_class(case), sample_bytes(case)
    ('channels_last_2d', 512)
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

# The committed measurements (repository-relative): each a JSON list of `groupnorm bench` records.
SOURCES = (
    # AMD EPYC (Zen 4, 32 MiB L3), 31 rounds; made before this rule existed, when every quick case ran the kernels
    "docs/results/bench-cpu.json",
    # Intel Xeon with AVX-512 (480 MiB L3), 15 rounds, kernels forced; three runs
    "docs/results/bench-cpu/kernels-vs-torch/xeon-avx512-1.json",
    "docs/results/bench-cpu/kernels-vs-torch/xeon-avx512-2.json",
    "docs/results/bench-cpu/kernels-vs-torch/xeon-avx512-3.json",
)
LAYOUT_CLASSES = ("nchw", "channels_last_2d", "channels_last_other")
MODES = ("fwd", "fwd+bwd")


def layout_class(case: dict) -> str:
    """``nchw`` (contiguous, any rank), ``channels_last_2d`` (4-D channels_last, where torch has a kernel of its
    own) or ``channels_last_other`` (channels innermost at another rank, where torch copies first)."""
    if case["layout"] == "nchw":
        return "nchw"
    return "channels_last_2d" if len(case["shape"]) == 4 else "channels_last_other"


def sample_bytes(case: dict) -> int:
    """Bytes of one sample (C x spatial float32 elements)."""
    n = 1
    for d in case["shape"][1:]:
        n *= d
    return 4 * n


def _plain(r: dict) -> bool:
    return r["activation"] == "none" and not r["residual"] and r["dtype"] == "float32" and r["mode"] in MODES


def ratios(records: list[list[dict]]) -> dict[tuple, dict[str, float]]:
    """(layout class, mode, shape) -> {cpu: median over that CPU's runs of torch time / kernels time}."""
    per_cpu: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in records:
        by_case: dict[tuple, dict[str, dict]] = defaultdict(dict)
        for r in run:
            if _plain(r) and r.get("median_ms"):
                by_case[(layout_class(r), r["mode"], tuple(r["shape"]))][r["provider"]] = r
        for key, providers in by_case.items():
            if {"groupnorm", "torch"} <= set(providers):
                cpu = f"{providers['torch']['cpu']} ({providers['torch'].get('cpu_isa', 'ISA not recorded')})"
                ratio = providers["torch"]["median_ms"] / providers["groupnorm"]["median_ms"]
                per_cpu[key][cpu].append(ratio)
    return {k: {cpu: statistics.median(v) for cpu, v in cpus.items()} for k, cpus in per_cpu.items()}


def derive(records: list[list[dict]]) -> dict:
    """The rule (see the module docstring) from bench runs: {layout class: {mode: "kernels" | "torch" |
    {"kernels_up_to_sample_bytes": B}}}, plus the per-case ratios it was derived from."""
    table = ratios(records)
    rule: dict[str, dict] = {}
    cases = []
    for cls in LAYOUT_CLASSES:
        rule[cls] = {}
        for mode in MODES:
            mine = {k: v for k, v in table.items() if k[0] == cls and k[1] == mode}
            won = {k: min(v.values()) >= 1.0 for k, v in mine.items()}
            sizes_won = [4 * _numel(k[2][1:]) for k, w in won.items() if w]
            sizes_lost = [4 * _numel(k[2][1:]) for k, w in won.items() if not w]
            if mine and all(won.values()):
                choice: str | dict = "kernels"
            elif sizes_won and sizes_lost and max(sizes_won) < min(sizes_lost):
                choice = {"kernels_up_to_sample_bytes": max(sizes_won)}
            else:
                choice = "torch"  # no measurement, none won, or winners and losers interleave in size
            rule[cls][mode] = choice
            for k, v in sorted(mine.items()):
                cases.append({"layout_class": cls, "mode": mode, "shape": list(k[2]), "ratio_by_cpu": v})
    return {"rule": rule, "cases": cases}


def _numel(dims) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


def load_sources(root: str | Path) -> list[list[dict]]:
    """The committed runs of :data:`SOURCES` under the repository ``root``."""
    return [json.loads((Path(root) / p).read_text()) for p in SOURCES]
