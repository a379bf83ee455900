#!/usr/bin/env python3
"""Two builds of the CPU kernel library in one process: are their results the same bits, and which is faster?

``--before`` is a git revision (its ``csrc`` files are compiled into a temporary directory) or, with
``--before-lib``, a library already built; the other side is the working tree's ``csrc`` (or ``--after`` /
``--after-lib``). Both are loaded with ctypes and declared as ``groupnorm.ops.cpu.loader`` declares its library.

``--check`` runs forward and backward through both libraries on cases chosen to reach every path of the kernels
(NCHW and channels_last, rank 3 to 5, float32/float16/bfloat16, every activation, with and without the affine
parameters, scale/shift and a residual, 1-3 threads, the default and small waves, streaming stores forced, shapes
that go whole to one thread and shapes split across threads) and compares every output bit for bit (NaN payloads
included); each run that differs is printed, and the exit status is 1 if any did.

``--time`` times the two libraries on the ``groupnorm bench --preset quick`` cases, interleaved in one process:
each round calls both (the order alternating), the library swapped under ``groupnorm.ops.cpu.kernels``, and the
table shows each side's median and the median over the rounds of the per-round ratio. It needs an otherwise idle
machine; on a busy one the ratios mean little.

Usage (from the repository root)::

    python scripts/cpu_kernel_ab.py --before HEAD~1 --check
    python scripts/cpu_kernel_ab.py --before HEAD~1 --time --rounds 21
    python scripts/cpu_kernel_ab.py --before-lib /tmp/old.so --time --shapes 2x32x8x8:8 --rounds 1
    python scripts/cpu_kernel_ab.py --before HEAD --after HEAD --time   # A/A: the noise of the timing itself
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from groupnorm.activations import ACTIVATION_CODES
from groupnorm.bench import harness, shapes
from groupnorm.ops.cpu import build, kernels, loader

ROOT = Path(__file__).resolve().parents[1]
CSRC_IN_REPO = build.CSRC.relative_to(ROOT)
SMALL_WAVE = 48 << 10  # many small waves: the split paths on small tensors


# ---------------------------------------------------------------- the two libraries


def compile_revision(rev: str, out_dir: Path, march: str | None, label: str = "lib") -> Path:
    """The library of ``rev``'s ``csrc`` files, compiled for ``march`` into ``out_dir`` (``label`` names the
    build, so that the same revision can be built twice: an A/A run that shows the timing noise)."""
    names = subprocess.run(
        ["git", "ls-tree", "--name-only", rev, f"{CSRC_IN_REPO}/"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    if not names:
        raise SystemExit(f"{rev} has no files under {CSRC_IN_REPO}")
    src = out_dir / f"{label}-csrc-{rev.replace('/', '_')}"
    src.mkdir()
    for name in names:
        text = subprocess.run(
            ["git", "show", f"{rev}:{name}"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        (src / Path(name).name).write_bytes(text)
    return compile_directory(src, out_dir / f"{src.name}.so", march)


def compile_directory(src: Path, output: Path, march: str | None) -> Path:
    """Every translation unit (``*.c``) of ``src`` compiled for ``march`` into one library."""
    build.compile_library(sorted(src.glob("*.c")), output, march)
    return output


def load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    loader._declare(lib)
    if lib.gn_abi_version() != loader.ABI_VERSION:
        raise SystemExit(f"{path} has ABI {lib.gn_abi_version()}, this checkout expects {loader.ABI_VERSION}")
    return lib


def libraries(args: argparse.Namespace, work: Path) -> tuple[ctypes.CDLL, ctypes.CDLL]:
    def one(rev: str | None, lib: str | None, label: str) -> ctypes.CDLL:
        if lib:
            return load(Path(lib))
        if rev:
            print(f"building {label} from {rev} ...", file=sys.stderr)
            return load(compile_revision(rev, work, args.march, label))
        print(f"building {label} from the working tree ...", file=sys.stderr)
        return load(compile_directory(build.CSRC, work / f"{label}.so", args.march))

    return one(args.before, args.before_lib, "before"), one(args.after, args.after_lib, "after")


# ---------------------------------------------------------------- --check


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


@dataclass(frozen=True)
class CheckCase:
    """One input: shape, groups, layout (0 NCHW, 1 channels_last) and why it is in the list."""

    shape: tuple[int, ...]
    groups: int
    layout: int
    why: str


CHECK_CASES = [
    # NCHW (rows of S elements)
    CheckCase((16, 64, 7, 7), 32, 0, "rows of 49: one vector stream across rows; groups whole in runs"),
    CheckCase((3, 64, 33, 31), 8, 0, "long odd rows; whole or split by thread count"),
    CheckCase((1, 32, 64, 80), 1, 0, "one group of many blocks: the split path"),
    CheckCase((2, 8, 256, 256), 2, 0, "1 MiB groups: whole with large waves, split with small; 2-byte waves"),
    CheckCase((8, 64, 300), 16, 0, "rank 3"),
    CheckCase((4, 32, 4, 10, 10), 8, 0, "rank 5"),
    CheckCase((64, 32, 3, 3), 8, 0, "rows shorter than a vector"),
    CheckCase((1, 64, 64, 64), 32, 0, "2-byte NCHW runs with two threads"),
    CheckCase((8, 64, 16, 16), 32, 0, "2-byte samples whole to one thread each"),
    # channels_last (pixels of C channels)
    CheckCase((3, 64, 33, 31), 8, 1, "64-channel statistics chunks; whole or split by thread count"),
    CheckCase((4, 40, 4, 16, 16), 4, 1, "rank 5, C not a multiple of 16"),
    CheckCase(
        (3, 1024, 5, 5), 32, 1, "wide pixels: channel chunks in the sums, four pixels per coefficient load"
    ),
    CheckCase((4, 256, 32, 32), 8, 1, "1 MiB samples"),
    CheckCase((1, 128, 48, 48), 32, 1, "one sample: the split path; 2-byte blocks and waves"),
    CheckCase((12, 24, 5, 7), 6, 1, "fewer channels than a statistics chunk"),
    CheckCase((8, 32, 500), 8, 1, "rank 3"),
    CheckCase((8, 2048, 7, 7), 32, 1, "2048 channels"),
    CheckCase((8, 64, 16, 16), 32, 1, "2-byte samples whole to one thread each"),
]

# which outputs the backward asks for: dx, dweight, dbias, dresidual, dscale, dshift
MASKS = [
    (True, True, True, True, True, True),
    (True, True, True, False, False, False),
    (True, False, False, False, False, False),
    (False, False, False, True, False, False),
    (False, True, True, False, True, True),
    (True, False, False, True, False, False),
]
HALF_CODES = {torch.float16: 1, torch.bfloat16: 2}


@dataclass(frozen=True)
class Run:
    """How one case is called: dtype, activation, which optional inputs exist, threads, waves, streaming."""

    dtype: torch.dtype
    activation: str
    affine: bool
    scale_shift: bool
    residual: bool
    mask: tuple[bool, ...]
    threads: int
    wave_bytes: int
    stream_bytes: int


def runs_for(case: CheckCase, index: int) -> Iterator[Run]:
    """Every dtype x activation x thread count; the optional inputs, masks, wave sizes and streaming stores varied
    among them (each cycle has a length prime to the others, so the combinations spread over the runs)."""
    variants = itertools.cycle(itertools.product([True, False], [False, True], [False, True]))  # 8
    masks = itertools.cycle(MASKS)  # 6, with the 3 thread counts: every mask meets every count
    waves = itertools.cycle(
        [kernels.DEFAULT_WAVE_BYTES, SMALL_WAVE, kernels.DEFAULT_WAVE_BYTES, SMALL_WAVE, 0]
    )
    streams = itertools.cycle([0, 1, 1, 0, 1, 0, 1])  # 1: every output large enough (plain epilogue only)
    for _ in range(index):  # different cases start at different points of the cycles
        next(variants), next(masks), next(waves), next(streams)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for act in ACTIVATION_CODES:
            for threads in (1, 2, 3):
                affine, scale_shift, residual = next(variants)
                wave = next(waves) or kernels.DEFAULT_WAVE_BYTES
                yield Run(
                    dtype, act, affine, scale_shift, residual, next(masks), threads, wave, next(streams)
                )


def make_inputs(case: CheckCase, run: Run, seed: int) -> dict[str, torch.Tensor | None]:
    gen = torch.Generator().manual_seed(seed)
    n, c = case.shape[:2]

    def tensor() -> torch.Tensor:
        t = (torch.randn(*case.shape, generator=gen) * 3 + 1).to(run.dtype)
        return t.movedim(1, -1).contiguous().movedim(-1, 1) if case.layout == 1 else t.contiguous()

    x = tensor()
    if seed % 5 == 0:  # NaN and infinities pass through
        flat = x.view(-1) if case.layout == 0 else x.movedim(1, -1).reshape(-1)
        flat[3], flat[-2], flat[flat.numel() // 2] = float("nan"), float("inf"), float("-inf")

    def vec(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=gen)

    return {
        "x": x,
        "grad": tensor(),
        "res": tensor() if run.residual else None,
        "w": vec(c) if run.affine else None,
        "b": vec(c) if run.affine else None,
        "sc": vec(n, c) * 0.5 if run.scale_shift else None,
        "sh": vec(n, c) if run.scale_shift else None,
    }


def call(lib: ctypes.CDLL, case: CheckCase, run: Run, t: dict) -> list[torch.Tensor]:
    """Forward, then backward with run.mask, through lib: every output the library wrote."""
    n, c = case.shape[:2]
    s = t["x"].numel() // (n * c)
    g, act = case.groups, ACTIVATION_CODES[run.activation]
    x = t["x"]
    y = torch.empty_like(x)
    mean, rstd = torch.empty(n, g), torch.empty(n, g)
    half = HALF_CODES.get(run.dtype)
    params = (t["w"], t["b"], t["sc"], t["sh"], t["res"])
    pointers = [_ptr(v) for v in (x, y, mean, rstd, *params)]
    sizes = (n, c, s, g, 1e-5, act, case.layout, run.threads, run.wave_bytes)
    if half is None:
        rc = lib.gn_forward_f32(*pointers, *sizes, run.stream_bytes)
    else:
        rc = lib.gn_forward_half(*pointers, *sizes, half)
    assert rc == 0, f"forward returned {rc}"

    def out(wanted: bool, like: torch.Tensor | None) -> torch.Tensor | None:
        return torch.full_like(like, 7.0) if wanted and like is not None else None  # 7: a write is visible

    want = run.mask
    dx, dw, db = out(want[0], x), out(want[1], t["w"]), out(want[2], t["b"])
    dres, dsc, dsh = out(want[3], t["res"]), out(want[4], t["sc"]), out(want[5], t["sh"])
    grads = (dx, dw, db, dres, dsc, dsh)
    pointers = [_ptr(v) for v in (t["grad"], x, mean, rstd, *params, *grads)]
    sizes = (n, c, s, g, act, case.layout, run.threads, run.wave_bytes)
    if half is None:
        rc = lib.gn_backward_f32(*pointers, *sizes, run.stream_bytes)
    else:
        rc = lib.gn_backward_half(*pointers, *sizes, half)
    assert rc == 0, f"backward returned {rc}"
    return [y, mean, rstd, *(r for r in grads if r is not None)]


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int32 if t.element_size() == 4 else torch.int16)


def check(before: ctypes.CDLL, after: ctypes.CDLL) -> int:
    """Every run of every case through both libraries; each run whose outputs differ is printed (exit status 1)."""
    compared, different = 0, 0
    for index, case in enumerate(CHECK_CASES):
        for k, run in enumerate(runs_for(case, index)):
            inputs = make_inputs(case, run, seed=1000 * index + k)
            a, b = call(before, case, run, inputs), call(after, case, run, inputs)
            diff = [i for i, (u, v) in enumerate(zip(a, b)) if not torch.equal(bits(u), bits(v))]
            if diff:
                different += 1
                print(
                    f"DIFFERENT outputs {diff} (y, mean, rstd, then the gradients asked for): {case.shape} {run}"
                )
            compared += 1
        print(f"done: {case.shape} layout {case.layout} ({case.why})", file=sys.stderr)
    if different:
        print(f"{different} of {compared} runs differ")
        return 1
    print(f"all {compared} runs (forward and backward) gave the same bits in both libraries")
    return 0


# ---------------------------------------------------------------- --time


def quick_cases(names: list[str]) -> list[harness.Case]:
    """The cases of ``groupnorm bench --preset quick`` (float32, both layouts, GN and GN+SiLU, fwd and fwd+bwd)."""
    return [
        harness.Case(shape, layout, "float32", act, False, mode)
        for shape in shapes.lookup(names)
        for layout in ("nchw", "channels_last")
        for act in ("none", "silu")
        for mode in ("fwd", "fwd+bwd")
    ]


def runner(lib: ctypes.CDLL, case: harness.Case, inp) -> Callable[[], object]:
    """One call of the case through kernels.forward/backward, with lib as the library."""
    mask = [True, True, True, False, False, False]  # dx, dweight, dbias, as the bench's forward+backward
    no_epilogue_inputs = (None, None, None)  # residual, scale, shift

    def run() -> object:
        loader._state["lib"] = lib
        x, w, b, g, act = inp.x, inp.weight, inp.bias, inp.groups, case.activation
        y, mean, rstd = kernels.forward(x, w, b, g, 1e-5, act, *no_epilogue_inputs)
        if case.mode == "fwd":
            return y
        return kernels.backward(inp.grad, x, w, b, mean, rstd, g, act, *no_epilogue_inputs, mask)

    return run


def time_both(before: ctypes.CDLL, after: ctypes.CDLL, args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = harness.Clock("cpu")
    print(f"threads: {torch.get_num_threads()}, rounds: {args.rounds}; speed-up: before / after per round\n")
    print("| shape | layout | activation | mode | before ms | after ms | speed-up (median of rounds) |")
    print("|---|---|---|---|---:|---:|---:|")
    for case in quick_cases(args.shapes):
        inp = harness.make_inputs(case, "cpu")
        runners = {"before": runner(before, case, inp), "after": runner(after, case, inp)}
        iters = {name: harness._calibrate(clock, fn, args.min_round_ms / 1e3) for name, fn in runners.items()}
        times, _ = harness.interleaved_rounds(runners, iters, clock, args.rounds)
        ratio = statistics.median(b / a for b, a in zip(times["before"], times["after"]))
        print(
            f"| {case.shape.name} | {case.layout} | {case.activation} | {case.mode} "
            f"| {statistics.median(times['before']) * 1e3:.3f} | {statistics.median(times['after']) * 1e3:.3f} "
            f"| {ratio:.3f} |",
            flush=True,
        )
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    side = p.add_mutually_exclusive_group(required=True)
    side.add_argument("--before", metavar="REV", help="git revision whose csrc/ is the 'before' library")
    side.add_argument("--before-lib", metavar="PATH", help="an already built 'before' library")
    other = p.add_mutually_exclusive_group()
    other.add_argument(
        "--after", metavar="REV", help="git revision for the 'after' side (default: working tree)"
    )
    other.add_argument("--after-lib", metavar="PATH", help="an already built 'after' library")
    p.add_argument(
        "--march", help="the target both sides are built for (default: GROUPNORM_CPU_MARCH, native)"
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--check", action="store_true", help="compare the outputs bit for bit")
    what.add_argument("--time", action="store_true", help="time both, interleaved (an idle machine only)")
    p.add_argument("--shapes", type=lambda s: s.split(","), default=shapes.QUICK_NAMES, help="--time: shapes")
    p.add_argument("--rounds", type=int, default=21, help="--time: interleaved rounds per case (default: 21)")
    p.add_argument("--min-round-ms", type=float, default=15.0, help="--time: shortest round (default: 15)")
    p.add_argument("--threads", type=int, help="--time: torch.set_num_threads (default: torch's)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="cpu-kernel-ab-") as tmp:
        before, after = libraries(args, Path(tmp))
        try:
            return check(before, after) if args.check else time_both(before, after, args)
        finally:
            loader.reset()


if __name__ == "__main__":
    raise SystemExit(main())
