"""Measure where the compiled CPU kernels overtake torch's own group_norm on small plain calls.

``groupnorm.group_norm`` hands small plain float32 NCHW CPU calls to ``torch.nn.functional.group_norm``
(:func:`groupnorm.ops.routing.served_by_torch`), because a call through Python to the kernels has a fixed cost of
about 25 microseconds. This times ``groupnorm.group_norm`` on the kernels (``GROUPNORM_CPU_SMALL_NUMEL=0``) against
``torch.nn.functional.group_norm`` itself, forward and forward+backward, NCHW and channels_last, in interleaved
rounds, with freed memory kept mapped as in ``groupnorm bench``; the crossover sets
``groupnorm.ops.routing.DEFAULT_SMALL_CPU_NUMEL``. The same for a ResNet block's end (GN, + residual, ReLU; one fused
call against three torch ops) sets ``DEFAULT_SMALL_CPU_NUMEL_RELU``. Run ``python -m groupnorm.bench.small_calls``.
"""

from __future__ import annotations

import os
import statistics

import torch
import torch.nn.functional as F

from groupnorm import env
from groupnorm.bench.harness import Clock

_CLOCK = Clock("cpu")
NUMELS = [1 << 10, 1 << 12, 1 << 14, 1 << 16, 1 << 17, 1 << 18, 1 << 19, 1 << 20]


EPILOGUES = ("none", "relu+residual")


def _runners(fn, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, groups: int, r=None) -> dict:
    xg, wg, bg = (t.detach().requires_grad_() for t in (x, w, b))
    dy = torch.randn_like(x)
    if r is None:
        return {
            "fwd": lambda: fn(x, groups, w, b),
            "fwd+bwd": lambda: torch.autograd.grad(fn(xg, groups, wg, bg), (xg, wg, bg), dy),
        }
    rg = r.detach().requires_grad_()
    return {
        "fwd": lambda: fn(x, groups, w, b, r),
        "fwd+bwd": lambda: torch.autograd.grad(fn(xg, groups, wg, bg, rg), (xg, wg, bg, rg), dy),
    }


def _fused_relu_residual(x, groups, w, b, r):
    from groupnorm.functional import group_norm

    return group_norm(x, groups, w, b, activation="relu", residual=r)


def _torch_relu_residual(x, groups, w, b, r):
    return F.relu(F.group_norm(x, groups, w, b) + r)


def measure(
    numels: list[int], channels: int = 64, groups: int = 32, rounds: int = 9, epilogue: str = "none"
) -> list[dict]:
    """Kernels vs torch per size, layout and mode; ``epilogue="relu+residual"`` times a ResNet block's end
    (GN, + residual, ReLU: fused on the kernels, three ops in torch)."""
    from groupnorm.functional import group_norm

    if epilogue not in EPILOGUES:
        raise ValueError(f"epilogue must be one of {EPILOGUES}, got {epilogue!r}")
    rows = []
    for numel in numels:
        for layout in ("nchw", "channels_last"):
            side = max(1, int((numel // (2 * channels)) ** 0.5))
            x = torch.randn(2, channels, side, side)
            if layout == "channels_last":
                x = x.contiguous(memory_format=torch.channels_last)
            w, b = torch.randn(channels), torch.randn(channels)
            if epilogue == "none":
                ours = _runners(group_norm, x, w, b, groups)
                theirs = _runners(F.group_norm, x, w, b, groups)
            else:
                r = torch.randn_like(x)
                ours = _runners(_fused_relu_residual, x, w, b, groups, r)
                theirs = _runners(_torch_relu_residual, x, w, b, groups, r)
            for mode in ours:
                iters = max(5, min(500, int(2e6 // max(x.numel(), 1))))
                times = {"kernels": [], "torch": []}
                os.environ[env.CPU_SMALL_NUMEL.name] = "0"
                try:
                    for _ in range(rounds):
                        for route, fn in (("kernels", ours[mode]), ("torch", theirs[mode])):
                            fn()
                            times[route].append(_CLOCK.per_call(fn, iters))
                finally:
                    os.environ.pop(env.CPU_SMALL_NUMEL.name, None)
                k, t = statistics.median(times["kernels"]), statistics.median(times["torch"])
                rows.append(
                    dict(
                        numel=x.numel(),
                        layout=layout,
                        mode=mode,
                        epilogue=epilogue,
                        kernels_us=k * 1e6,
                        torch_us=t * 1e6,
                    )
                )
    return rows


def main() -> int:
    from groupnorm.bench import allocator

    allocator.keep_freed_memory()  # as groupnorm bench does: page faults of fresh allocations are not the kernels
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; float32, 2 x 64 x H x W, G = 32")
    print(
        "| numel | layout | epilogue | mode | kernels us | torch us | kernels speed-up |\n"
        "|---:|---|---|---|---:|---:|---:|"
    )
    for epilogue in EPILOGUES:
        for r in measure(NUMELS, epilogue=epilogue):
            print(
                f"| {r['numel']} | {r['layout']} | {epilogue} | {r['mode']} | {r['kernels_us']:.1f} | "
                f"{r['torch_us']:.1f} | {r['torch_us'] / r['kernels_us']:.2f}x |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
