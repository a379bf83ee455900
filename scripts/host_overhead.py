#!/usr/bin/env python3
"""Host (Python) cost of the Triton launchers per call, with the kernels stubbed out: what a call costs the CPU
before any GPU work, the part that dominates small shapes when calls run back to back.

Every kernel is replaced by a counter, tensors live on torch's ``meta`` device (shapes and strides without
storage: allocating one costs a few µs, about what CUDA's caching allocator does, where a CPU tensor of these
sizes costs 40-150 µs in mmap), and the planner sees an H200 (132 SMs, 50 MiB L2). For each key shape x layout,
the forward (SiLU, weight and bias) and the backward (dx, dweight, dbias) are called many times after a first
call; the time per call is the median over batches of calls, in the calling thread's CPU time (``*_wall_us``:
the wall clock, which on a loaded machine also counts other processes). ``forward_us`` / ``backward_us`` are the
medians over the cases.

Usage::

    PYTHONPATH=src python3 scripts/host_overhead.py --json host-overhead.json
    PYTHONPATH=src python3 scripts/host_overhead.py --batches 5 --calls 50   # quicker, noisier

Exit status 0 when both medians are within the targets (--forward-target / --backward-target, in µs).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import sys
import time

import torch

from groupnorm.bench.shapes import KEY_SHAPES
from groupnorm.ops.triton import backward_kernels, forward_kernels, launch
from groupnorm.ops.triton.planner import DeviceSpec

H200 = DeviceSpec(sm_count=132, l2_bytes=50 * 2**20)
ALLOC_US: list[float] = []  # per measure(): CPU µs of one torch.empty(1) on meta, timed among the cases
KERNELS = {
    forward_kernels: (
        "fwd_onepass_flat_kernel",
        "fwd_onepass_kernel",
        "fwd_partial_stats_kernel",
        "fwd_apply_kernel",
    ),
    backward_kernels: (
        "bwd_onepass_flat_kernel",
        "bwd_onepass_kernel",
        "bwd_partial_kernel",
        "bwd_total_kernel",
        "bwd_dx_kernel",
        "bwd_param_kernel",
    ),
}


class StubKernel:
    """Stands in for a JIT kernel: ``kernel[grid](*args, **kwargs)`` only counts the launch."""

    def __init__(self) -> None:
        self.launches = 0

    def _launch(self, *args, **kwargs) -> None:
        self.launches += 1

    def __getitem__(self, grid):
        return self._launch


@contextlib.contextmanager
def stubbed_kernels():
    """Every kernel the launchers use replaced by a :class:`StubKernel` (yielded as a list); restored after."""
    saved = {(module, name): getattr(module, name) for module, names in KERNELS.items() for name in names}
    stubs = []
    for module, name in saved:
        stub = StubKernel()
        setattr(module, name, stub)
        stubs.append(stub)
    try:
        yield stubs
    finally:
        for (module, name), kernel in saved.items():
            setattr(module, name, kernel)


def _time_batch(fn, calls: int) -> tuple[float, float]:
    """(CPU µs, wall µs) per call of one batch of ``calls`` calls.

    CPU time is this thread's own (``time.thread_time``): on a loaded machine the wall clock also counts the
    time other processes held the core, CPU time only what a call itself costs.
    """
    start_cpu, start_wall = time.thread_time(), time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.thread_time() - start_cpu) / calls * 1e6, (time.perf_counter() - start_wall) / calls * 1e6


def measure(batches: int, calls: int, device: DeviceSpec = H200, shapes=None) -> list[dict]:
    """One record per (shape, layout): host µs per forward and backward call, launches, plan."""
    with stubbed_kernels() as stubs:
        return _measure(stubs, batches, calls, device, shapes or KEY_SHAPES)


def _calls(shape, layout: str, device: DeviceSpec):
    """(x, forward call, backward call) of one case, on meta tensors."""
    x = torch.empty(shape.shape, dtype=torch.bfloat16, device="meta")
    if layout == "channels_last":
        x = x.movedim(1, -1).contiguous().movedim(-1, 1)
    c, g = shape.shape[1], shape.groups
    w, b = torch.empty(c, device="meta"), torch.empty(c, device="meta")
    grad = torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device="meta")
    mean = torch.empty(shape.shape[0], g, device="meta")
    mask = [True, True, True, False, False, False]

    def fwd():
        return launch.forward(x, w, b, g, 1e-5, "silu", None, None, None, device=device)

    def bwd():
        return launch.backward(grad, x, w, b, mean, mean, g, "silu", None, None, None, mask, device=device)

    return x, fwd, bwd


def _measure(stubs, batches, calls, device, shapes) -> list[dict]:
    records, timed = [], []
    for shape in shapes:
        for layout in ("nchw", "channels_last"):
            x, fwd, bwd = _calls(shape, layout, device)
            before = sum(s.launches for s in stubs)
            fwd()  # the first call of a layout plans and validates; the rest find it cached
            fwd_launches = sum(s.launches for s in stubs) - before
            bwd()
            bwd_launches = sum(s.launches for s in stubs) - before - fwd_launches
            records.append(
                {
                    "shape": list(shape.shape),
                    "layout": layout,
                    "forward_launches": fwd_launches,
                    "backward_launches": bwd_launches,
                    "forward_plan": launch.plan_for(x, shape.groups, x.element_size(), device).describe(),
                }
            )
            timed.append((fwd, bwd))
    # Round-robin: batch k of every case runs before batch k + 1 of any, so that a slow moment of a shared
    # machine hits all cases alike. As timeit does, no cyclic garbage collection while timing (a collection of
    # torch's large heap lands on whichever call triggers it; the launchers create no cycles).
    samples = [([], [], [], []) for _ in timed]
    reference = []

    def alloc():
        return torch.empty(1, device="meta")

    gc.collect()
    gc.disable()
    try:
        for _ in range(batches):
            reference.append(_time_batch(alloc, calls)[0])
            for (fwd, bwd), (f_cpu, f_wall, b_cpu, b_wall) in zip(timed, samples, strict=True):
                cpu, wall = _time_batch(fwd, calls)
                f_cpu.append(cpu)
                f_wall.append(wall)
                cpu, wall = _time_batch(bwd, calls)
                b_cpu.append(cpu)
                b_wall.append(wall)
    finally:
        gc.enable()
    ALLOC_US.append(statistics.median(reference))
    for record, (f_cpu, f_wall, b_cpu, b_wall) in zip(records, samples, strict=True):
        record.update(
            forward_us=round(statistics.median(f_cpu), 2),
            backward_us=round(statistics.median(b_cpu), 2),
            forward_wall_us=round(statistics.median(f_wall), 2),
            backward_wall_us=round(statistics.median(b_wall), 2),
        )
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the report here")
    parser.add_argument(
        "--batches", type=int, default=21, help="batches of calls per case (median over them)"
    )
    parser.add_argument("--calls", type=int, default=200, help="calls per batch")
    parser.add_argument("--forward-target", type=float, default=25.0)
    parser.add_argument("--backward-target", type=float, default=50.0)
    args = parser.parse_args(argv)
    for name in ("batches", "calls"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")

    records = measure(args.batches, args.calls)
    load = os.getloadavg()
    report = {
        "forward_us": round(statistics.median(r["forward_us"] for r in records), 2),
        "backward_us": round(statistics.median(r["backward_us"] for r in records), 2),
        "forward_us_max": max(r["forward_us"] for r in records),
        "backward_us_max": max(r["backward_us"] for r in records),
        "forward_wall_us": round(statistics.median(r["forward_wall_us"] for r in records), 2),
        "backward_wall_us": round(statistics.median(r["backward_wall_us"] for r in records), 2),
        "targets_us": {"forward": args.forward_target, "backward": args.backward_target},
        # The machine's pace in the same run: a call costs about (allocations + launches) times this.
        "reference_alloc_us": round(ALLOC_US[-1], 2),
        "method": (
            "kernels stubbed, meta tensors, H200 plan, no garbage collection inside a timed batch (as timeit); "
            "*_us is the calling thread's CPU time per call, "
            "*_wall_us the wall clock; per case the median over "
            f"{args.batches} batches of {args.calls} calls, then the median over cases"
        ),
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "load_average_1m": round(load[0], 2),
            "note": (
                "measured on a shared, loaded CPU: the wall clock includes time other processes held the core; "
                "thread CPU time and medians limit that, cache effects remain"
            ),
        },
        "cases": records,
    }
    text = json.dumps(report, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    for r in records:
        print(
            f"{'x'.join(map(str, r['shape'])):>18} {r['layout']:>13}  fwd {r['forward_us']:7.1f} us "
            f"({r['forward_launches']} launches)  bwd {r['backward_us']:7.1f} us ({r['backward_launches']})"
        )
    ok = report["forward_us"] <= args.forward_target and report["backward_us"] <= args.backward_target
    print(
        f"median forward {report['forward_us']} us (target {args.forward_target}), backward "
        f"{report['backward_us']} us (target {args.backward_target}); one meta allocation "
        f"{report['reference_alloc_us']} us; load average {load[0]:.2f}: "
        f"{'within' if ok else 'OVER'} target"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
