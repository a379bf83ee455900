"""Measure where the compiled CPU kernels start beating the plain-torch implementation behind the same op.

Both legs go through ``torch.ops.groupnorm.forward`` (and ``backward``), so the op's own overhead is shared;
what differs is the implementation the registry picks. Run ``python -m groupnorm.bench.dispatch_threshold``;
the crossover sets ``groupnorm.ops.cpu.DEFAULT_MIN_NUMEL``.
"""

from __future__ import annotations

import os
import statistics
import sys

import torch

from groupnorm.bench.harness import Clock

_CLOCK = Clock("cpu")


def measure(numels: list[int], channels: int = 32, groups: int = 8, rounds: int = 7) -> list[dict]:
    import groupnorm.ops  # noqa: F401
    import groupnorm.ops.cpu  # noqa: F401

    rows = []
    for numel in numels:
        x = torch.randn(2, channels, max(1, numel // (2 * channels)))
        w, b = torch.randn(channels), torch.randn(channels)
        y, mean, rstd = torch.ops.groupnorm.forward(x, w, b, groups, 1e-5, "silu", None, None, None)
        dy = torch.randn_like(y)
        mask = [True, True, True, False, False, False]

        def fwd_bwd(x=x, w=w, b=b, dy=dy, mean=mean, rstd=rstd, mask=mask):
            torch.ops.groupnorm.forward(x, w, b, groups, 1e-5, "silu", None, None, None)
            torch.ops.groupnorm.backward(dy, x, w, b, mean, rstd, groups, "silu", None, None, None, mask)

        times = {"kernel": [], "torch": []}
        for _ in range(rounds):
            for name, limit in (("kernel", "0"), ("torch", str(1 << 62))):
                os.environ["GROUPNORM_CPU_MIN_NUMEL"] = limit
                fwd_bwd()
                times[name].append(_CLOCK.per_call(fwd_bwd, 200))
        os.environ.pop("GROUPNORM_CPU_MIN_NUMEL", None)
        k, t = statistics.median(times["kernel"]), statistics.median(times["torch"])
        rows.append({"numel": x.numel(), "kernel_us": k * 1e6, "torch_us": t * 1e6, "speedup": t / k})
    return rows


def main() -> int:
    numels = [256, 512, 1024, 2048, 4096, 8192, 16384, 65536]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; forward+backward, silu, 2 x 32 x L")
    print("| numel | kernel us | torch us | speed-up |\n|---:|---:|---:|---:|")
    for r in measure(numels):
        print(f"| {r['numel']} | {r['kernel_us']:.1f} | {r['torch_us']:.1f} | {r['speedup']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
