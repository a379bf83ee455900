#!/usr/bin/env python3
"""Compile every Triton kernel variant the launchers use for an NVIDIA GPU, on a machine without one.

The interpreter tests run the kernels' Python; this compiles them (Triton front end, LLVM and ptxas), which
catches what only the compiler checks: types of loop-carried values, constexpr handling, unsupported ops.
The launchers run with each kernel replaced by a recorder; every distinct launch is then compiled for the target
with exactly the specialization Triton's launcher would derive from those arguments (its own binder: ints equal
to 1 become constants, ints and pointers divisible by 16 are marked so, which is what lets loads vectorize).

``--key-shapes`` compiles what the launchers launch for the key shapes (``groupnorm.bench.shapes.KEY_SHAPES``)
on an H200 plan (132 SMs, 50 MiB L2), x {nchw, channels_last} x bf16 (and fp32 for two ResNet-50 shapes) x
{fwd: SiLU forward, bwd: dx/dweight/dbias}, and reports per (shape, layout, dtype, mode, kernel) the launches of
that call, the widest global load and store in bytes (read from the PTX; ``*_widths`` counts the instructions of
each width, so narrow accesses beside a wide one show), registers and spill bytes (ptxas -v).

Usage::

    PYTHONPATH=src python3 scripts/triton_compile_check.py            # all variants, sm_90
    PYTHONPATH=src python3 scripts/triton_compile_check.py --quick --arch 80
    PYTHONPATH=src python3 scripts/triton_compile_check.py --key-shapes --json compile-report.json
    PYTHONPATH=src python3 scripts/triton_compile_check.py --key-shapes \
        --json docs/results/triton-compile-report.json --md docs/results/triton-compile-report.md
    PYTHONPATH=src python3 scripts/triton_compile_check.py --key-shapes --shapes 32x2048x7x7 --modes fwd

Exit status 0 when every variant compiles; failures are listed.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

if os.environ.get("TRITON_INTERPRET") == "1":
    sys.exit("run without TRITON_INTERPRET=1: this script compiles the kernels")

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource, make_backend  # noqa: E402

from groupnorm.bench.shapes import KEY_SHAPES, lookup  # noqa: E402
from groupnorm.ops.triton import backward_kernels, forward_kernels, launch  # noqa: E402
from groupnorm.ops.triton.planner import DeviceSpec, Tuning  # noqa: E402

H200 = DeviceSpec(sm_count=132, l2_bytes=50 * 2**20)
FP32_SHAPES = ("resnet50-s1-n32", "resnet50-s4-n32")

KERNEL_NAMES = {
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


class Recorder:
    """Stands in for a JIT kernel: ``kernel[grid](*args, **kwargs)`` records the call instead of launching."""

    def __init__(self, kernel, calls: list) -> None:
        self.kernel, self.calls = kernel, calls

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.calls.append((self.kernel, args, kwargs))


def specialization(kernel, args, kwargs, backend):
    """(signature, constexprs, attrs, options) exactly as Triton's launcher derives them for this call."""
    from triton.runtime.jit import create_function_from_signature

    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound_args, spec, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(
        backend, dict(kwargs), bound_args, spec, options
    )
    return signature, constexprs, attrs, options


def _key(kernel, signature, constexprs, attrs, options) -> tuple:
    return (
        kernel.__name__,
        tuple(sorted(signature.items())),
        tuple(sorted((str(k), str(v)) for k, v in constexprs.items())),
        tuple(sorted((str(k), str(v)) for k, v in attrs.items())),
        options.num_warps,
    )


@contextlib.contextmanager
def recording(calls: list):
    """Replace every kernel by a :class:`Recorder` appending to ``calls``; the kernels are back afterwards."""
    saved = {
        (module, name): getattr(module, name) for module, names in KERNEL_NAMES.items() for name in names
    }
    for (module, name), kernel in saved.items():
        setattr(module, name, Recorder(kernel, calls))
    try:
        yield calls
    finally:
        for (module, name), kernel in saved.items():
            setattr(module, name, kernel)


def record_calls(quick: bool) -> list:
    """Launches of every variant: each dtype, activation, epilogue and 64-bit choice on both planner paths."""
    with recording([]) as calls:
        _run_variants(quick)
    return calls


def _run_variants(quick: bool) -> None:
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


def key_cases(shape_names: list[str] | None, modes: tuple[str, ...]) -> list[dict]:
    """(shape, layout, dtype, mode) of the report, as dicts, with the launches each call records."""
    shapes = lookup(shape_names) if shape_names else KEY_SHAPES
    cases = []
    for shape in shapes:
        dtypes = [torch.bfloat16] + ([torch.float32] if shape.name in FP32_SHAPES else [])
        for dtype, layout, mode in itertools.product(dtypes, ("nchw", "channels_last"), modes):
            x = torch.empty(shape.shape, dtype=dtype, device="meta")
            if layout == "channels_last":
                x = x.movedim(1, -1).contiguous().movedim(-1, 1)
            c, g = shape.shape[1], shape.groups
            w, b = torch.empty(c, device="meta"), torch.empty(c, device="meta")
            with recording([]) as calls:
                if mode == "fwd":
                    launch.forward(x, w, b, g, 1e-5, "silu", None, None, None, device=H200)
                else:
                    stats = torch.empty(shape.shape[0], g, device="meta")
                    mask = [True, True, True, False, False, False]
                    launch.backward(
                        torch.empty_like(x),
                        x,
                        w,
                        b,
                        stats,
                        stats,
                        g,
                        "silu",
                        None,
                        None,
                        None,
                        mask,
                        device=H200,
                    )
            cases.append(
                {"shape": list(shape.shape), "layout": layout, "dtype": str(dtype).removeprefix("torch."),
                 "mode": mode, "calls": calls}
            )  # fmt: skip
    return cases


def _ptxas() -> str | None:
    try:
        from triton.backends.nvidia.compiler import get_ptxas

        return get_ptxas(90).path
    except Exception:  # older or newer Triton: the one on PATH
        return shutil.which("ptxas")


_ACCESS = re.compile(r"\b(ld|st)\.global((?:\.[\w:]+)*)")


def global_access_widths(ptx: str) -> dict[str, dict[int, int]]:
    """How many ld.global / st.global instructions of each width in bytes (vector count x element width) the
    PTX holds: ``{"ld": {16: 4, 4: 2}, "st": {...}}``."""
    widths: dict[str, dict[int, int]] = {"ld": {}, "st": {}}
    for op, suffix in _ACCESS.findall(ptx):
        parts = suffix.split(".")
        vec = next((int(p[1:]) for p in parts if re.fullmatch(r"v\d", p)), 1)
        bits = next((int(p[1:]) for p in parts if re.fullmatch(r"[bfsu]\d+", p)), 0)
        width = vec * bits // 8
        widths[op][width] = widths[op].get(width, 0) + 1
    return widths


def register_usage(ptx: str, arch: int) -> tuple[int | None, int | None]:
    """(registers, spill bytes: stores + loads) from ``ptxas -v`` on the PTX; None when ptxas is absent."""
    ptxas = _ptxas()
    if ptxas is None:
        return None, None
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "kernel.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        arch_name = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"
        out = subprocess.run(
            [ptxas, "-v", f"--gpu-name={arch_name}", src, "-o", os.path.join(tmp, "kernel.cubin")],
            capture_output=True,
            text=True,
            check=True,
        )
    log = out.stdout + out.stderr
    regs = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    return (
        int(regs.group(1)) if regs else None,
        int(spills.group(1)) + int(spills.group(2)) if spills else None,
    )


def compile_call(kernel, call_args, call_kwargs, target, backend):
    """The compiled kernel for one recorded launch and its specialization key."""
    signature, constexprs, attrs, options = specialization(kernel, call_args, call_kwargs, backend)
    key = _key(kernel, signature, constexprs, attrs, options)
    compiled = triton.compile(
        ASTSource(kernel, signature, constexprs, attrs), target=target, options=options.__dict__
    )
    return key, compiled


def key_shape_report(target, backend, arch: int, shape_names, modes) -> tuple[list[dict], list[str]]:
    records, failures, seen = [], [], {}
    for case in key_cases(shape_names, modes):
        calls = case.pop("calls")
        by_kernel: dict = {}
        for kernel, call_args, call_kwargs in calls:
            by_kernel.setdefault(kernel.__name__, []).append((kernel, call_args, call_kwargs))
        for name, launches in by_kernel.items():
            kernel, call_args, call_kwargs = launches[0]
            record = {**case, "kernel": name, "launches": len(calls), "kernel_launches": len(launches)}
            try:
                signature, constexprs, attrs, options = specialization(
                    kernel, call_args, call_kwargs, backend
                )
                key = _key(kernel, signature, constexprs, attrs, options)
                if key not in seen:
                    _key_again, compiled = compile_call(kernel, call_args, call_kwargs, target, backend)
                    ptx = compiled.asm["ptx"]
                    seen[key] = (global_access_widths(ptx), *register_usage(ptx, arch))
                widths, regs, spills = seen[key]
                record.update(
                    ld_global_bytes=max(widths["ld"], default=0), st_global_bytes=max(widths["st"], default=0),
                    ld_global_widths=widths["ld"], st_global_widths=widths["st"], registers=regs, spills=spills,
                    num_warps=options.num_warps,
                    constexprs={str(k): v for k, v in constexprs.items() if str(k).startswith("('BLOCK")
                                or str(k).isupper()},
                )  # fmt: skip
            except Exception as exc:  # report every failing kernel, not only the first
                failures.append(f"{name} {case}: {exc!r}"[:2000])
                record["error"] = repr(exc)[:500]
            records.append(record)
    return records, failures


# What each kernel streams: x (and dy, the residual) read, y or dx (and dresidual) written. The others move
# per-group or per-channel partial sums, whose accesses are small by nature.
STREAM_LOADS = {name for names in KERNEL_NAMES.values() for name in names} - {
    "bwd_total_kernel",
    "bwd_param_kernel",
}
STREAM_STORES = STREAM_LOADS - {"fwd_partial_stats_kernel", "bwd_partial_kernel"}


def markdown(records: list[dict], command: str, arch: int) -> str:
    """The report as a page: what holds (16-byte streaming accesses, no spills, launches), then every record."""
    loads = [r for r in records if r["kernel"] in STREAM_LOADS and "error" not in r]
    stores = [r for r in records if r["kernel"] in STREAM_STORES and "error" not in r]
    narrow = [r for r in loads if r["ld_global_bytes"] < 16] + [
        r for r in stores if r["st_global_bytes"] < 16
    ]
    spilling = [r for r in records if r.get("spills")]
    launches = {m: max((r["launches"] for r in records if r["mode"] == m), default=0) for m in ("fwd", "bwd")}

    def name(r: dict) -> str:
        return f"{'x'.join(map(str, r['shape']))} {r['layout']} {r['dtype']} {r['mode']} {r['kernel']}"

    lines = [
        "# What the Triton launchers launch for the key shapes, compiled for an H200",
        "",
        f"Command: `{command}` (Triton {triton.__version__}, sm_{arch}, no GPU needed: Triton's front end, LLVM",
        "and ptxas, with the specialization Triton's launcher derives from the real arguments).",
        "",
        f"- Streaming loads (x, dy, residual) at 16 bytes: {len(loads) - sum(r['ld_global_bytes'] < 16 for r in loads)}"
        f" of {len(loads)} kernel records; streaming stores (y, dx): "
        f"{len(stores) - sum(r['st_global_bytes'] < 16 for r in stores)} of {len(stores)}.",
        *[f"  - narrower: {name(r)}" for r in narrow],
        f"- Register spills: {len(spilling)} record(s)" + (":" if spilling else "."),
        *[f"  - {name(r)}: {r['spills']} bytes" for r in spilling],
        f"- Most registers per thread: {max((r.get('registers') or 0) for r in records)}; most launches per call: "
        f"forward {launches['fwd']}, backward {launches['bwd']} (targets: 3 and 5).",
        "",
        "| shape | layout | dtype | mode | kernel | launches | widest ld / st (bytes) | registers | spills |",
        "|---|---|---|---|---|---:|---:|---:|---:|",
    ]
    for r in records:
        lines.append(
            f"| {'x'.join(map(str, r['shape']))} | {r['layout']} | {r['dtype']} | {r['mode']} | {r['kernel']} | "
            f"{r['launches']} | {r.get('ld_global_bytes', '?')} / {r.get('st_global_bytes', '?')} | "
            f"{r.get('registers', '?')} | {r.get('spills', '?')} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--arch", type=int, default=90, help="CUDA compute capability to compile for (90 = H100/H200)"
    )
    parser.add_argument("--quick", action="store_true", help="bf16 and SiLU only: a representative subset")
    parser.add_argument("--key-shapes", action="store_true", help="report on what the key shapes launch")
    parser.add_argument("--shapes", help="with --key-shapes: comma-separated names or NxCxHxW[:G] instead")
    parser.add_argument("--modes", default="fwd,bwd", help="with --key-shapes: fwd, bwd or both")
    parser.add_argument("--json", help="with --key-shapes: write the records here")
    parser.add_argument("--md", help="with --key-shapes: write the report as a markdown page here")
    args = parser.parse_args(argv)
    modes = tuple(m for m in args.modes.split(",") if m)
    if not modes or any(m not in ("fwd", "bwd") for m in modes):
        parser.error(f"--modes must name fwd and/or bwd, got --modes {args.modes!r}")

    target = GPUTarget("cuda", args.arch, 32)
    backend = make_backend(target)
    start = time.perf_counter()
    if args.key_shapes:
        shape_names = args.shapes.split(",") if args.shapes else None
        records, failures = key_shape_report(target, backend, args.arch, shape_names, modes)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(records, f, indent=1)
        if args.md:
            command = "PYTHONPATH=src python3 scripts/triton_compile_check.py " + " ".join(
                argv if argv is not None else sys.argv[1:]
            )
            with open(args.md, "w") as f:
                f.write(markdown(records, command, args.arch))
        for r in records:
            print(
                f"{'x'.join(map(str, r['shape'])):>18} {r['layout']:>13} {r['dtype']:>8} {r['mode']:>3} "
                f"{r['kernel']:>24} launches={r['launches']} ld={r.get('ld_global_widths')} "
                f"st={r.get('st_global_widths')} regs={r.get('registers')} spills={r.get('spills')}"
            )
        print(f"{len(records)} records in {time.perf_counter() - start:.1f} s")
    else:
        seen, failures = set(), []
        for kernel, call_args, call_kwargs in record_calls(args.quick):
            try:
                signature, constexprs, attrs, options = specialization(
                    kernel, call_args, call_kwargs, backend
                )
                key = _key(kernel, signature, constexprs, attrs, options)
                if key in seen:
                    continue
                seen.add(key)
                triton.compile(
                    ASTSource(kernel, signature, constexprs, attrs), target=target, options=options.__dict__
                )
            except Exception as exc:  # report every failing variant, not only the first
                failures.append(f"{kernel.__name__} {call_kwargs}: {exc!r}"[:2000])
        elapsed = time.perf_counter() - start
        print(
            f"compiled {len(seen) - len(failures)}/{len(seen)} kernel variants for sm_{args.arch} in {elapsed:.1f} s"
        )
    for failure in failures:
        print("FAILED", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
