#!/usr/bin/env python3
"""Compile every Triton kernel variant the launchers use for an NVIDIA GPU, on a machine without one.

The interpreter tests run the kernels' Python; this compiles them (Triton front end, LLVM and ptxas), which
catches what only the compiler checks: types of loop-carried values, constexpr handling, unsupported ops.
The launchers run on CPU tensors with each kernel replaced by a recorder; every distinct launch is then compiled
for the target with the argument specialization Triton would use (ints equal to 1 become constants).

Usage::

    PYTHONPATH=src python scripts/triton_compile_check.py            # all variants, sm_90
    PYTHONPATH=src python scripts/triton_compile_check.py --quick --arch 80

Exit status 0 when every variant compiles; failures are listed.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

if os.environ.get("TRITON_INTERPRET") == "1":
    sys.exit("run without TRITON_INTERPRET=1: this script compiles the kernels")

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402
from triton.runtime.jit import mangle_type  # noqa: E402

from groupnorm.ops.triton import backward_kernels, forward_kernels, launch  # noqa: E402
from groupnorm.ops.triton.planner import DeviceSpec, Tuning  # noqa: E402

KERNEL_NAMES = {
    forward_kernels: ("fwd_onepass_kernel", "fwd_partial_stats_kernel", "fwd_apply_kernel"),
    backward_kernels: (
        "bwd_onepass_kernel",
        "bwd_partial_kernel",
        "bwd_total_kernel",
        "bwd_dx_kernel",
        "bwd_param_kernel",
    ),
}


class Recorder:
    """Stands in for a JIT kernel: ``kernel[grid](*args, **kwargs)`` records the call instead of launching."""

    def __init__(self, kernel, calls: list) -> None:
        self.kernel, self.calls = kernel, calls

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.calls.append((self.kernel, args, kwargs))


def specialization(kernel, args, kwargs):
    """(signature, constexprs, num_warps) the way Triton's launcher would specialize this call."""
    kwargs = dict(kwargs)
    num_warps = kwargs.pop("num_warps", 4)
    values = dict(zip(kernel.arg_names, args, strict=False)) | kwargs
    signature, constexprs = {}, {}
    for param in kernel.params:
        value = values[param.name]
        kind = "constexpr" if param.is_constexpr else mangle_type(value, True)
        signature[param.name] = kind
        if kind == "constexpr":
            constexprs[param.name] = value
    return signature, constexprs, num_warps


def record_calls(quick: bool) -> list:
    calls: list = []
    for module, names in KERNEL_NAMES.items():
        for name in names:
            setattr(module, name, Recorder(getattr(module, name), calls))
    one_pass = (DeviceSpec(sm_count=1, l2_bytes=1 << 30), Tuning())
    split = (DeviceSpec(sm_count=132, l2_bytes=1 << 20), Tuning())
    shapes = [
        ((2, 64, 8, 8), 32),
        ((1, 64, 96, 96), 32),
        ((1, 512, 40, 40), 1),
    ]  # one pass, split, wide groups
    dtypes = [torch.bfloat16] if quick else [torch.float32, torch.float16, torch.bfloat16]
    activations = ["silu"] if quick else ["none", "relu", "silu", "gelu", "gelu_tanh"]
    for (shape, groups), dtype, act, epilogue, int64 in itertools.product(
        shapes, dtypes, activations, (False, True), (False, True)
    ):
        if quick and int64 and epilogue:
            continue
        x = torch.randn(shape, dtype=dtype).contiguous(memory_format=torch.channels_last)
        n, c = shape[:2]
        w, b = torch.randn(c), torch.randn(c)
        res = torch.randn(shape, dtype=dtype) if epilogue else None
        scale = torch.randn(n, c) if epilogue else None
        shift = torch.randn(n, c) if epilogue else None
        mean = torch.zeros(n, groups)
        for spec, tuning in (one_pass, split):
            tuning = Tuning(**{**tuning.__dict__, "force_int64": int64})
            launch.forward(x, w, b, groups, 1e-5, act, res, scale, shift, device=spec, tuning=tuning)
            for mask in (
                [True] * 6,
                [True, False, False, False, False, False],
                [False, True, True, True, True, True],
            ):
                launch.backward(
                    torch.randn_like(x),
                    x,
                    w,
                    b,
                    mean,
                    mean,
                    groups,
                    act,
                    res,
                    scale,
                    shift,
                    mask,
                    device=spec,
                    tuning=tuning,
                )
    return calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--arch", type=int, default=90, help="CUDA compute capability to compile for (90 = H100)"
    )
    parser.add_argument("--quick", action="store_true", help="bf16 and SiLU only: a representative subset")
    args = parser.parse_args(argv)

    target = GPUTarget("cuda", args.arch, 32)
    seen, failures = set(), []
    start = time.perf_counter()
    for kernel, call_args, call_kwargs in record_calls(args.quick):
        signature, constexprs, num_warps = specialization(kernel, call_args, call_kwargs)
        key = (
            kernel.__name__,
            tuple(sorted(signature.items())),
            tuple(sorted(constexprs.items())),
            num_warps,
        )
        if key in seen:
            continue
        seen.add(key)
        try:
            triton.compile(
                ASTSource(kernel, signature, constexprs), target=target, options={"num_warps": num_warps}
            )
        except Exception as exc:  # report every failing variant, not only the first
            failures.append(f"{kernel.__name__} {constexprs} num_warps={num_warps}: {exc!r}"[:2000])
    elapsed = time.perf_counter() - start
    print(
        f"compiled {len(seen) - len(failures)}/{len(seen)} kernel variants for sm_{args.arch} in {elapsed:.1f} s"
    )
    for failure in failures:
        print("FAILED", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
