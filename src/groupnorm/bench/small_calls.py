"""Measure where the compiled CPU kernels overtake torch's own group_norm on small plain calls.

``groupnorm.group_norm`` hands small plain float32 NCHW CPU calls to ``torch.nn.functional.group_norm``
(:func:`groupnorm.ops.eager.served_by_torch`), because a call through Python to the kernels has a fixed cost of
about 25 microseconds. This times ``groupnorm.group_norm`` on the kernels (``GROUPNORM_CPU_SMALL_NUMEL=0``) against
``torch.nn.functional.group_norm`` itself, forward and forward+backward, NCHW and channels_last, in interleaved
rounds, with freed memory kept mapped as in ``groupnorm bench``; the crossover sets
``groupnorm.ops.eager.DEFAULT_SMALL_CPU_NUMEL``. Run ``python -m groupnorm.bench.small_calls``.
"""

from __future__ import annotations

import os
import statistics

import torch
import torch.nn.functional as F

from groupnorm.bench.harness import Clock

_CLOCK = Clock("cpu")
NUMELS = [1 << 10, 1 << 12, 1 << 14, 1 << 16, 1 << 17, 1 << 18, 1 << 19, 1 << 20]


def _runners(fn, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, groups: int) -> dict:
    xg, wg, bg = (t.detach().requires_grad_() for t in (x, w, b))
    dy = torch.randn_like(x)
    return {
        "fwd": lambda: fn(x, groups, w, b),
        "fwd+bwd": lambda: torch.autograd.grad(fn(xg, groups, wg, bg), (xg, wg, bg), dy),
    }


def measure(numels: list[int], channels: int = 64, groups: int = 32, rounds: int = 9) -> list[dict]:
    from groupnorm.functional import group_norm

    rows = []
    for numel in numels:
        for layout in ("nchw", "channels_last"):
            side = max(1, int((numel // (2 * channels)) ** 0.5))
            x = torch.randn(2, channels, side, side)
            if layout == "channels_last":
                x = x.contiguous(memory_format=torch.channels_last)
            w, b = torch.randn(channels), torch.randn(channels)
            ours = _runners(group_norm, x, w, b, groups)
            theirs = _runners(F.group_norm, x, w, b, groups)
            for mode in ours:
                iters = max(5, min(500, int(2e6 // max(x.numel(), 1))))
                times = {"kernels": [], "torch": []}
                os.environ["GROUPNORM_CPU_SMALL_NUMEL"] = "0"
                try:
                    for _ in range(rounds):
                        for route, fn in (("kernels", ours[mode]), ("torch", theirs[mode])):
                            fn()
                            times[route].append(_CLOCK.per_call(fn, iters))
                finally:
                    os.environ.pop("GROUPNORM_CPU_SMALL_NUMEL", None)
                k, t = statistics.median(times["kernels"]), statistics.median(times["torch"])
                rows.append(
                    dict(numel=x.numel(), layout=layout, mode=mode, kernels_us=k * 1e6, torch_us=t * 1e6)
                )
    return rows


def main() -> int:
    from groupnorm.bench import allocator

    allocator.keep_freed_memory()  # as groupnorm bench does: page faults of fresh allocations are not the kernels
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; plain epilogue, float32, 2 x 64 x H x W"
    )
    print(
        "| numel | layout | mode | kernels us | torch us | kernels speed-up |\n|---:|---|---|---:|---:|---:|"
    )
    for r in measure(NUMELS):
        print(
            f"| {r['numel']} | {r['layout']} | {r['mode']} | {r['kernels_us']:.1f} | {r['torch_us']:.1f} "
            f"| {r['torch_us'] / r['kernels_us']:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
