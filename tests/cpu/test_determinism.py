"""Same bits on every run, for every thread count and every cache-wave size, and whatever else a call asks for, in
every build this CPU can run (native and the x86-64, -v3, -v4 targets: see conftest.any_build)."""

from __future__ import annotations

import pytest
import torch

from groupnorm.ops.cpu import kernels

# Small groups/samples go whole to one thread when there are at least two per thread, else they are split across
# threads: with 1, 2 and 3 threads, the cases with 3 or 4 units cross that line, so both paths must agree.
CASES = [
    pytest.param((3, 64, 33, 31), 8, "contiguous", id="nchw"),
    pytest.param((2, 32, 20, 20), 2, "contiguous", id="nchw-4-groups-fused-or-split"),
    pytest.param((3, 64, 33, 31), 8, "channels_last", id="channels_last-3-samples-fused-or-split"),
    pytest.param((1, 32, 64, 80), 1, "contiguous", id="nchw-G1-many-blocks"),
    pytest.param((2, 40, 4, 16, 16), 4, "channels_last", id="channels_last_3d"),
    # units above the L2-sized limit but within a thread's share of a wave: whole by one thread with the default
    # waves, split across threads with small ones
    pytest.param((4, 256, 32, 32), 8, "channels_last", id="channels_last-1MB-samples"),
    pytest.param((2, 8, 256, 256), 2, "contiguous", id="nchw-1MB-groups"),
    # rows shorter than 128 elements are done as one stream of vectors across row boundaries
    pytest.param((1, 64, 7, 7), 2, "contiguous", id="nchw-short-rows-fused-or-split"),
    # the backward's channels_last sums go through pixels in address order up to 512 channels, in chunks above
    pytest.param((3, 1024, 5, 5), 32, "channels_last", id="channels_last-wide-pixels"),
]


def run_all(x, w, b, res, sc, sh, grad, groups, act):
    y, mean, rstd = kernels.forward(x, w, b, groups, 1e-5, act, res, sc, sh)
    grads = kernels.backward(grad, x, w, b, mean, rstd, groups, act, res, sc, sh, [True] * 6)
    return (y, mean, rstd, *grads)


@pytest.mark.parametrize("act", ["silu", "none"])  # the plain epilogue has loops of its own
@pytest.mark.parametrize("shape,groups,layout", CASES)
def test_bitwise_across_threads_runs_and_waves(any_build, monkeypatch, shape, groups, layout, act):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, generator=gen) * 3 + 1
    if layout == "channels_last":
        x = x.movedim(1, -1).contiguous().movedim(-1, 1)
    n, c = shape[:2]
    w, b = torch.randn(c, generator=gen), torch.randn(c, generator=gen)
    sc, sh = torch.randn(n, c, generator=gen), torch.randn(n, c, generator=gen)
    res, grad = torch.randn_like(x), torch.randn_like(x)
    args = (x, w, b, res, sc, sh, grad, groups, act)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = run_all(*args)
        again = run_all(*args)
        torch.set_num_threads(1)
        one = run_all(*args)
        torch.set_num_threads(3)  # more threads than cores: uneven splits
        three = run_all(*args)
        torch.set_num_threads(2)
        monkeypatch.setenv("GROUPNORM_CPU_WAVE_BYTES", str(48 * 1024))  # many small waves
        small_waves = run_all(*args)
    finally:
        torch.set_num_threads(threads)
    for other, label in (
        (again, "rerun"),
        (one, "1 thread"),
        (three, "3 threads"),
        (small_waves, "small waves"),
    ):
        for i, (a, b_) in enumerate(zip(two, other)):
            assert torch.equal(a, b_), f"output {i} differs between 2 threads and {label}"


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_streaming_stores_give_the_same_bits(any_build, monkeypatch, layout):
    # large outputs (y, dx) are written with streaming stores; force that path on a small tensor (odd sizes:
    # unaligned row starts and tails in NCHW)
    x = torch.randn(3, 64, 13, 11) * 2 + 1
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(64), torch.randn(64)
    grad = torch.randn_like(x)
    mask = [True, True, True, False, False, False]

    def both():
        y, mean, rstd = kernels.forward(x, w, b, 8, 1e-5, "none", None, None, None)
        return (
            y,
            mean,
            rstd,
            *kernels.backward(grad, x, w, b, mean, rstd, 8, "none", None, None, None, mask),
        )

    monkeypatch.setenv("GROUPNORM_CPU_STREAM_BYTES", "0")
    plain = both()
    monkeypatch.setenv("GROUPNORM_CPU_STREAM_BYTES", "1")
    streamed = both()
    for a, b_ in zip(plain, streamed):
        assert torch.equal(a, b_)


@pytest.mark.parametrize("act", ["gelu", "gelu_tanh", "silu", "relu", "none"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_parameter_gradients_do_not_depend_on_what_else_is_asked(any_build, layout, act):
    # rows of 49 and 300 elements: the part of a row past the last 64-element chunk is summed by its own loop, once
    # compiled for a backward that stores g for the dx pass and once for one that does not; both give the same bits
    for shape in ((2, 32, 7, 7), (2, 16, 300)):
        gen = torch.Generator().manual_seed(3)
        x = torch.randn(*shape, generator=gen) * 3 + 1
        if layout == "channels_last":
            x = x.movedim(1, -1).contiguous().movedim(-1, 1)
        c = shape[1]
        w, b = torch.randn(c, generator=gen), torch.randn(c, generator=gen)
        grad = torch.randn_like(x)
        y, mean, rstd = kernels.forward(x, w, b, 8, 1e-5, act, None, None, None)
        params_only = kernels.backward(
            grad, x, w, b, mean, rstd, 8, act, None, None, None, [False, True, True] + [False] * 3
        )
        with_dx = kernels.backward(
            grad, x, w, b, mean, rstd, 8, act, None, None, None, [True, True, True] + [False] * 3
        )
        for i in (1, 2):
            assert torch.equal(params_only[i], with_dx[i]), (
                f"{shape}: gradient {i} changes when dx is asked for"
            )
