"""Timing: interleaved rounds, medians, bandwidth against a plain copy measured in the same run.

For one case every provider and a same-size copy run in turn, round after round, so that a slow moment of a
shared machine hits them all alike; each reported time is the median over the rounds of the per-call time of a
batch of calls. On CUDA the batches are timed with events after a synchronize.

Bytes moved (GB/s = bytes / time): forward reads x and writes y (plus residual read); backward reads grad and x
(and the residual when an activation needs the pre-activation) and writes dx (and dresidual); forward+backward is
the sum. The copy moves the bytes of x once in and once out.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from groupnorm.bench import providers as providers_mod
from groupnorm.bench.shapes import Shape

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
LAYOUTS = ("nchw", "channels_last")


@dataclass(frozen=True)
class Case:
    shape: Shape
    layout: str
    dtype: str
    activation: str
    residual: bool
    mode: str

    def key(self) -> tuple:
        """Identifies the case across runs (for --resume)."""
        s = self.shape
        return (s.name, self.layout, self.dtype, self.activation, self.residual, self.mode)


def to_layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    """t in the named layout: ``nchw`` is contiguous, ``channels_last`` puts C innermost for any rank >= 3."""
    if layout == "nchw" or t.dim() < 3:
        return t.contiguous()
    if layout == "channels_last":
        return t.movedim(1, -1).contiguous().movedim(-1, 1)
    raise ValueError(f"layout must be one of {LAYOUTS}, got layout={layout!r}")


def make_inputs(case: Case, device: str, seed: int = 0) -> providers_mod.Inputs:
    gen = torch.Generator().manual_seed(seed)
    dtype = DTYPES[case.dtype]
    shape = case.shape.shape
    c = shape[1]

    def rand(*size):
        return torch.randn(*size, generator=gen).to(device=device, dtype=dtype)

    x = to_layout(rand(*shape), case.layout)
    residual = to_layout(rand(*shape), case.layout) if case.residual else None
    grad = to_layout(rand(*shape), case.layout)
    return providers_mod.Inputs(
        x=x,
        weight=rand(c),
        bias=rand(c),
        groups=case.shape.groups,
        activation=case.activation,
        residual=residual,
        grad=grad,
    )


def bytes_moved(case: Case, element_size: int) -> int:
    """Bytes a pass must move at least once (see the module docstring)."""
    numel = case.shape.numel
    fwd = 2 + (1 if case.residual else 0)
    bwd = 3 + (1 if case.residual else 0) + (1 if case.residual and case.activation != "none" else 0)
    tensors = {"fwd": fwd, "bwd": bwd, "fwd+bwd": fwd + bwd}[case.mode]
    return tensors * numel * element_size


class Clock:
    """Seconds per call of a batch of calls, on the CPU or a CUDA device."""

    def __init__(self, device: str):
        self.cuda = torch.device(device).type == "cuda"

    def per_call(self, fn: Callable[[], object], iters: int) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            for _ in range(iters):
                fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1000.0 / iters
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(iters):
            fn()
        self.last_cpu = (time.process_time() - c0) / iters
        return (time.perf_counter() - t0) / iters

    last_cpu: float | None = None  # CPU seconds per call (all threads) of the last CPU batch


def _calibrate(clock: Clock, fn: Callable[[], object], min_round_s: float, warm_up: bool = True) -> int:
    """Calls per round so that a round lasts at least ``min_round_s`` (after warm-up calls, unless the caller
    has just run ``fn``: a whole model's call can take seconds). A call's time is the fastest of three, so that a
    cold first call does not leave this runner with fewer calls per round than the others."""
    if warm_up:
        fn()
        fn()
    one = min(clock.per_call(fn, 1) for _ in range(3 if warm_up else 1))
    return max(1, min(1000, int(min_round_s / max(one, 1e-7)) + 1))


def interleaved_rounds(
    runners: dict[str, Callable[[], object]], iters: dict[str, int], clock: Clock, rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per-call seconds of each runner in each round (``iters[name]`` calls per round), and CPU seconds per call
    on the CPU (empty lists on CUDA). Every round runs each runner once, in an order shuffled every round (seeded,
    so a run repeats): no runner always follows the same one (a rotation would keep each runner behind the same
    predecessor, e.g. always after the copy that evicts the caches), and a slow moment of a shared machine hits
    them all alike.
    """
    times: dict[str, list[float]] = {name: [] for name in runners}
    cpu_times: dict[str, list[float]] = {name: [] for name in runners}
    order = list(runners)
    for name in order:  # an unrecorded round: each runner's data and code are warm from here on, all alike
        clock.per_call(runners[name], iters[name])
    rng = random.Random(0)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            times[name].append(clock.per_call(runners[name], iters[name]))
            if clock.last_cpu is not None:
                cpu_times[name].append(clock.last_cpu)
    return times, cpu_times


def run_case(
    case: Case,
    provider_names: list[str],
    *,
    device: str = "cpu",
    rounds: int = 7,
    min_round_s: float = 0.02,
) -> list[dict]:
    """Time each provider and a same-size copy for ``case``; one record per provider (without machine fields)."""
    inp = make_inputs(case, device)
    clock = Clock(device)
    runners: dict[str, Callable[[], object]] = {}
    errors: dict[str, str] = {}
    for name in provider_names:
        try:
            runners[name] = providers_mod.get(name).setup(inp, case.mode)
        except Exception as e:  # noqa: BLE001  (a provider that cannot run this case is reported, not fatal)
            errors[name] = f"{type(e).__name__}: {e}"
    src = inp.x
    dst = torch.empty_like(src)
    runners["__copy__"] = lambda: dst.copy_(src)

    iters = {}
    for name in list(runners):
        try:
            iters[name] = _calibrate(clock, runners[name], min_round_s)
        except Exception as e:  # noqa: BLE001
            errors[name] = f"{type(e).__name__}: {e}"
            del runners[name]
    # The same calls per round for every provider (the slowest one's count): the first call of a round, after
    # another runner has filled the caches with its own data, costs more than the rest, and a provider with fewer
    # calls per round would pay more of it per call (the provider calibrated first, while cold, used to).
    compared = [n for n in runners if n != "__copy__"]
    if compared:
        same = min(iters[n] for n in compared)
        iters.update({n: same for n in compared})
    times, cpu_times = interleaved_rounds(runners, iters, clock, rounds)

    elem = src.element_size()
    copy_s = statistics.median(times["__copy__"])
    copy_gbps = 2 * src.numel() * elem / copy_s / 1e9
    moved = bytes_moved(case, elem)
    medians = {name: statistics.median(ts) for name, ts in times.items() if name != "__copy__"}
    bests = {name: min(ts) for name, ts in times.items() if name != "__copy__"}
    # CPU time (all threads) per call: on a machine shared with other work, wall time also counts the time a
    # thread waited for its core; CPU time does not (spin-waiting at a barrier still counts).
    cpu = {name: statistics.median(ts) for name, ts in cpu_times.items() if ts and name != "__copy__"}
    # paired: each round's torch time over this provider's time in the same round, median over rounds; a slow or
    # fast moment of a shared machine then cancels within the pair instead of landing in one median only
    paired = {
        name: statistics.median(t / o for t, o in zip(times["torch"], ts))
        for name, ts in times.items()
        if name != "__copy__" and "torch" in times
    }
    torch_s = medians.get("torch")
    records = []
    for name in provider_names:
        rec = {
            "provider": name,
            "mode": case.mode,
            "layout": case.layout,
            "dtype": case.dtype,
            "shape": list(case.shape.shape),
            "shape_name": case.shape.name,
            "groups": case.shape.groups,
            "activation": case.activation,
            "residual": case.residual,
            "bytes": moved,
            "copy_gbps": round(copy_gbps, 4),
            "rounds": rounds,
        }
        if name in medians:
            s = medians[name]
            gbps = moved / s / 1e9
            rec.update(
                median_ms=round(s * 1e3, 4),
                # the fastest round: on a shared machine the least disturbed one
                min_ms=round(bests[name] * 1e3, 4),
                ratio_vs_torch_best=None if torch_s is None else round(bests["torch"] / bests[name], 3),
                median_cpu_ms=round(cpu[name] * 1e3, 4) if name in cpu else None,
                ratio_vs_torch_cpu=(
                    round(cpu["torch"] / cpu[name], 3)
                    if name in cpu and "torch" in cpu and cpu[name] > 0
                    else None
                ),
                gbps=round(gbps, 4),
                pct_copy=round(100 * gbps / copy_gbps, 1),
                ratio_vs_torch=None if torch_s is None else round(torch_s / s, 3),
                ratio_vs_torch_paired=round(paired[name], 3) if name in paired else None,
                iters_per_round=iters[name],
                error=None,
            )
        else:
            rec.update(
                median_ms=None,
                min_ms=None,
                gbps=None,
                pct_copy=None,
                ratio_vs_torch=None,
                ratio_vs_torch_paired=None,
                ratio_vs_torch_best=None,
                median_cpu_ms=None,
                ratio_vs_torch_cpu=None,
                error=errors.get(name),
            )
        records.append(rec)
    return records


def roofline(case: Case, device: str) -> tuple[str | None, float | None]:
    """Which memory limit applies to a CPU forward row, and its fraction of the copy bandwidth.

    ``one-read`` when the unit the statistics need (a group in NCHW, a sample in channels_last) fits in the
    kernel's cache wave, so x can come from DRAM once (limit: the copy bandwidth); else ``read-twice`` (x read
    twice, y written once: 2/3 of the copy bandwidth). None for other modes and devices.
    """
    if case.mode != "fwd" or torch.device(device).type != "cpu":
        return None, None
    from groupnorm.ops.cpu.kernels import wave_bytes

    n, c = case.shape.shape[:2]
    per_sample = case.shape.numel // n * 4  # the kernel works in float32
    unit = per_sample if case.layout == "channels_last" else per_sample // case.shape.groups
    if unit <= wave_bytes():
        return "one-read", 1.0
    return "read-twice", 2.0 / 3.0
