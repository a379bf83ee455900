#!/usr/bin/env python3
"""The GPU check's table: preflight, cache warming and the benchmark rows of ``scripts/gpu_check.sh``.

Rows are the key shapes (``groupnorm.bench.shapes.KEY_SHAPES``) x {nchw, channels_last} x bf16 (and fp32 for
two ResNet-50 shapes) x {fwd, fwd+bwd}; the epilogue is SiLU (ReLU on the ResNet-50 shapes). Each row times
every provider (this package's op, torch eager, torch.compile with one compiled function per row, Liger-Kernel
when importable) as eager calls and as CUDA-graph replays, and gives the % of the measured copy bandwidth, our
plan and launch count, and each provider's max error against torch in float32. A row is appended to the JSONL
file (and flushed) as soon as it is done, so a run cut off by a time limit keeps what it did.

Usage (see gpu_check.sh)::

    python3 scripts/gpu_bench.py preflight --json OUT/preflight.json
    python3 scripts/gpu_bench.py warm --worker 0 --workers 4        # compile everything a row will run
    python3 scripts/gpu_bench.py bench --jsonl OUT/results.jsonl --preflight OUT/preflight.json
    python3 scripts/gpu_bench.py table OUT/results.jsonl

``--shapes a,b`` (names or NxCxHxW[:G]) replaces the key shapes; ``--device cpu`` with ``TRITON_INTERPRET=1``
runs every step on CPU tensors, our op served by the interpreted Triton kernels (the dry run: CUDA-graph timings
are then absent).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch

from groupnorm.bench import harness, providers
from groupnorm.bench.shapes import KEY_SHAPES, Shape, lookup

FP32_SHAPES = ("resnet50-s1-n32", "resnet50-s4-n32")
MODES = ("fwd", "fwd+bwd")
LAYOUTS = ("nchw", "channels_last")


def rows(shape_list: list[Shape]) -> list[harness.Case]:
    """The benchmark cases, in the order they are run."""
    out = []
    for shape in shape_list:
        activation = "relu" if shape.name.startswith("resnet50") else "silu"
        dtypes = ["bfloat16"] + (["float32"] if shape.name in FP32_SHAPES else [])
        for dtype in dtypes:
            for layout in LAYOUTS:
                for mode in MODES:
                    out.append(harness.Case(shape, layout, dtype, activation, False, mode))
    return out


def route_cpu_through_interpreter() -> None:
    """Dry run: make the op serve CPU tensors with the Triton kernels (interpreted), as it serves CUDA ones."""
    import groupnorm.ops
    import groupnorm.ops.cpu  # noqa: F401  (registered first by the groupnorm provider otherwise)
    from groupnorm.ops import registry
    from groupnorm.ops.triton import launch

    registry.register_implementation(
        registry.Implementation(
            name="triton-interpreter", device_type="cpu", forward=launch.forward, backward=launch.backward,
            supports=launch.supports, description="dry run: the Triton kernels through the interpreter",
        )
    )  # fmt: skip


def provider_names(device: str) -> list[str]:
    names = ["groupnorm", "torch", "torch-compile"]
    if device == "cuda" and "liger" in providers.names():
        names.append("liger")
    return names


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def copy_bandwidth(device: str, nbytes: int = 1 << 30) -> float:
    """Bytes per second of a device-to-device copy of ``nbytes`` (read + write counted), median of 10."""
    if device != "cuda":
        nbytes = 1 << 24
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    times = []
    for _ in range(10):
        _sync(device)
        start = time.perf_counter()
        dst.copy_(src)
        _sync(device)
        times.append(time.perf_counter() - start)
    return 2 * nbytes / statistics.median(times)


def preflight(device: str) -> dict:
    info: dict = {"python": platform.python_version(), "torch": torch.__version__, "device": device}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError as exc:
        info["triton"] = f"missing ({exc})"
    info["interpreter"] = os.environ.get("TRITON_INTERPRET") == "1"
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name,
            sm_count=props.multi_processor_count,
            l2_bytes=int(getattr(props, "L2_cache_size", 0)),
            memory_gib=round(props.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
        )
    import groupnorm.ops.triton as gt

    info["triton_kernels_registered"] = gt.register()
    info["liger"] = "liger" in providers.names()
    info["liger_error"] = providers.load_errors().get("liger")  # why it is missing, when it is
    info["copy_bytes_per_s"] = copy_bandwidth(device)
    return info


def _time_eager(fn: Callable[[], object], device: str, rounds: int = 5, min_s: float = 0.02) -> float:
    """Median over rounds of the per-call time (µs) of a batch of back-to-back calls."""
    fn()
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    once = max(time.perf_counter() - start, 1e-6)
    calls = max(1, min(200, int(min_s / once)))
    samples = []
    for _ in range(rounds):
        _sync(device)
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        _sync(device)
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(samples)


def _time_graph(fn: Callable[[], object], rounds: int = 5) -> float:
    """Median per-replay time (µs) of ``fn`` captured in a CUDA graph (no host cost per call)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm up on a side stream, as capture requires
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return _time_eager(graph.replay, "cuda", rounds)


def _flat_outputs(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for t in out if isinstance(t, torch.Tensor)]


def _reference(inp: providers.Inputs, case: harness.Case) -> list[torch.Tensor]:
    """torch eager in float32 on the same inputs: y for fwd, (dx, dweight, dbias) for fwd+bwd."""
    f32 = providers.Inputs(
        x=inp.x.float(), weight=inp.weight.float(), bias=inp.bias.float(), groups=inp.groups,
        activation=inp.activation, residual=None, grad=inp.grad.float(),
    )  # fmt: skip
    return _flat_outputs(providers.get("torch").setup(f32, case.mode)())


def _max_error(out, ref: list[torch.Tensor]) -> float:
    got = _flat_outputs(out)
    return max(float((g.float() - r).abs().max()) for g, r in zip(got, ref, strict=True))


def run_row(
    case: harness.Case, device: str, names: list[str], copy_bps: float, timed: bool = True, rounds: int = 5
) -> dict:
    """One table row: every provider's times and error; ``timed=False`` only runs each once (cache warming)."""
    from groupnorm.ops.triton import launch

    inp = harness.make_inputs(case, device)
    element = inp.x.element_size()
    moved = harness.bytes_moved(case, element)
    row: dict = {
        "shape": list(case.shape.shape), "name": case.shape.name, "groups": case.shape.groups,
        "layout": case.layout, "dtype": case.dtype, "mode": case.mode, "activation": case.activation,
        "bytes": moved, "providers": {},
    }  # fmt: skip
    if launch.supports(inp.x):
        row.update(launch.launch_summary(inp.x, inp.groups, case.activation))
    ref = _reference(inp, case) if timed else None
    for name in names:
        entry: dict = {}
        try:
            fn = providers.get(name).setup(inp, case.mode)
            out = fn()
            _sync(device)
            if not timed:
                row["providers"][name] = {"warmed": True}
                continue
            entry["max_err"] = _max_error(out, ref)
            entry["eager_us"] = round(_time_eager(fn, device, rounds), 2)
            entry["graph_us"] = round(_time_graph(fn, rounds), 2) if device == "cuda" else None
            best = min(t for t in (entry["eager_us"], entry["graph_us"]) if t is not None)
            entry["pct_copy_bw"] = round(100 * moved / (best * 1e-6) / copy_bps, 1)
        except Exception as exc:  # one failing provider must not lose the row
            entry["error"] = f"{type(exc).__name__}: {exc}"[:500]
        row["providers"][name] = entry
    return row


def _append(path: str, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


_SHORT = {"channels_last": "cl", "bfloat16": "bf16", "float32": "fp32", "float16": "fp16"}


def _ratio(other: float | None, ours: float | None) -> str:
    return f"{other / ours:7.2f}x" if ours and other else f"{'-':>8}"


def table(path: str) -> str:
    """The compact table of a results file: µs per call of each provider (CUDA-graph replay where measured, else
    eager), torch eager's and torch.compile's time over ours, our % of copy bandwidth, our forward/backward
    launches, our max error against torch in float32."""
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    names: list[str] = []
    for r in records:
        names += [n for n in r["providers"] if n not in names]
    head = f"{'shape':>18} {'layout':>4} {'dtype':>5} {'mode':>7} " + " ".join(f"{n[:13]:>13}" for n in names)
    lines = [head + "   vs-eager vs-comp  %bw  launches  err", "-" * (len(head) + 40)]
    for r in records:
        cells, best = [], {}
        for n in names:
            e = r["providers"].get(n, {})
            t = e.get("graph_us") or e.get("eager_us")
            best[n] = t
            cells.append(f"{t:13.1f}" if t else f"{'err' if 'error' in e else '-':>13}")
        ours = best.get("groupnorm")
        launches = f"{r.get('forward_launches', '-')}/{r.get('backward_launches', '-')}"
        ours_e = r["providers"].get("groupnorm", {})
        lines.append(
            f"{'x'.join(map(str, r['shape'])):>18} {_SHORT.get(r['layout'], r['layout']):>4} "
            f"{_SHORT.get(r['dtype'], r['dtype']):>5} {r['mode']:>7} "
            + " ".join(cells)
            + f" {_ratio(best.get('torch'), ours)} {_ratio(best.get('torch-compile'), ours)} "
            f"{ours_e.get('pct_copy_bw', '-'):>5} {launches:>8} {ours_e.get('max_err', float('nan')):.1e}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("preflight", "warm", "bench", "table"))
    parser.add_argument("path", nargs="?", help="results file (table)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--shapes", help="comma-separated shape names or NxCxHxW[:G] (default: the key shapes)"
    )
    parser.add_argument("--json", help="preflight: write the result here")
    parser.add_argument("--jsonl", help="bench: append one line per row here")
    parser.add_argument("--preflight", help="bench: a preflight JSON with the copy bandwidth")
    parser.add_argument("--rounds", type=int, default=5, help="bench: timing rounds per provider (median)")
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    if args.step == "table":
        if not args.path:
            parser.error("table needs the results file")
        print(table(args.path))
        return 0
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got --rounds {args.rounds}")
    if not 0 <= args.worker < args.workers:
        parser.error(
            f"--worker must be in [0, --workers), got --worker {args.worker} --workers {args.workers}"
        )
    if args.device == "cpu" and os.environ.get("TRITON_INTERPRET") == "1":
        route_cpu_through_interpreter()
    shape_list = lookup(args.shapes.split(",")) if args.shapes else KEY_SHAPES
    cases = rows(shape_list)
    names = provider_names(args.device)

    if args.step == "preflight":
        info = preflight(args.device)
        print(" ".join(f"{k}={v}" for k, v in info.items()))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(info, f, indent=1)
        return 0
    if args.step == "warm":
        # Compiling is CPU work: several of these processes share the rows, filling the Triton and inductor
        # on-disk caches that the timed run then reads.
        for case in cases[args.worker :: args.workers]:
            row = run_row(case, args.device, names, 1.0, timed=False)
            print(row["name"], case.layout, case.dtype, case.mode, row["providers"], flush=True)
        return 0
    copy_bps = None
    if args.preflight and os.path.exists(args.preflight):
        with open(args.preflight) as f:
            copy_bps = json.load(f).get("copy_bytes_per_s")
    copy_bps = copy_bps or copy_bandwidth(args.device)
    for case in cases:
        row = run_row(case, args.device, names, copy_bps, rounds=args.rounds)
        row["copy_bytes_per_s"] = copy_bps
        if args.jsonl:
            _append(args.jsonl, row)
        ours = row["providers"].get("groupnorm", {})
        print(row["name"], case.layout, case.dtype, case.mode, ours, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
