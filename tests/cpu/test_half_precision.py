"""float16/bfloat16 tensors read and written in place by the library (csrc/half_precision.h).

The promise is exact: the same bits as the float32 kernels on the tensors converted to float32, with the float32
results rounded once to the 2-byte type, for every output, layout, epilogue and wave split.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from groupnorm.ops.cpu import build, kernels

HALF = [torch.float16, torch.bfloat16]

CASES = [
    pytest.param((3, 64, 9, 7), 8, "contiguous", id="nchw"),
    pytest.param((3, 64, 9, 7), 8, "channels_last", id="channels_last"),
    pytest.param((2, 40, 3, 4, 5), 4, "channels_last", id="channels_last_3d"),
    pytest.param((4, 24, 37), 6, "contiguous", id="1d"),
    # at least two samples of at most 1 MiB (float32) per thread: each sample whole on one thread
    pytest.param((5, 32, 64, 64), 8, "contiguous", id="nchw-sample-per-thread"),
    pytest.param((5, 32, 64, 64), 8, "channels_last", id="channels_last-sample-per-thread"),
    # too few samples for that: the forward reads the 2-byte data directly (NCHW in runs of groups, channels_last
    # in blocks and pieces); the backward goes in waves of two 1 MiB samples, the last one short
    pytest.param((3, 64, 64, 64), 8, "contiguous", id="nchw-direct-two-waves"),
    pytest.param((3, 64, 64, 64), 8, "channels_last", id="channels_last-direct-two-waves"),
    # one sample larger than a wave
    pytest.param((1, 64, 96, 96), 32, "channels_last", id="sample-larger-than-a-wave"),
    # an NCHW group larger than a run's tile (512 KiB of float32): the forward goes in waves too
    pytest.param((1, 8, 256, 256), 2, "contiguous", id="nchw-group-larger-than-a-tile"),
]


def _layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    return t.movedim(1, -1).contiguous().movedim(-1, 1) if layout == "channels_last" else t.contiguous()


def _case(shape, layout, dtype, epilogue: bool):
    gen = torch.Generator().manual_seed(3)
    n, c = shape[:2]
    x = _layout((torch.randn(*shape, generator=gen) * 2 + 1).to(dtype), layout)
    w, b = torch.randn(c, generator=gen), torch.randn(c, generator=gen)
    res = _layout(torch.randn(*shape, generator=gen).to(dtype), layout) if epilogue else None
    sc = torch.randn(n, c, generator=gen) * 0.1 if epilogue else None
    sh = torch.randn(n, c, generator=gen) if epilogue else None
    grad = _layout(torch.randn(*shape, generator=gen).to(dtype), layout)
    return x, w, b, res, sc, sh, grad


def _as_float(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.float()


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("act,epilogue", [("none", False), ("silu", True), ("gelu", False), ("none", True)])
@pytest.mark.parametrize("shape,groups,layout", CASES)
def test_same_bits_as_float32_kernels_rounded_once(kernel_lib, shape, groups, layout, dtype, act, epilogue):
    x, w, b, res, sc, sh, grad = _case(shape, layout, dtype, epilogue)
    y, mean, rstd = kernels.forward(x, w, b, groups, 1e-5, act, res, sc, sh)
    y32, mean32, rstd32 = kernels.forward(x.float(), w, b, groups, 1e-5, act, _as_float(res), sc, sh)
    assert y.dtype == dtype and y.stride() == x.stride()
    assert torch.equal(y, y32.to(dtype))
    assert torch.equal(mean, mean32) and torch.equal(rstd, rstd32)

    mask = [True, True, True, res is not None, sc is not None, sh is not None]
    grads = kernels.backward(grad, x, w, b, mean, rstd, groups, act, res, sc, sh, mask)
    grads32 = kernels.backward(
        grad.float(), x.float(), w, b, mean32, rstd32, groups, act, _as_float(res), sc, sh, mask
    )
    names = ("dx", "dweight", "dbias", "dresidual", "dscale", "dshift")
    for name, got, want in zip(names, grads, grads32):
        assert torch.equal(got, want.to(got.dtype)), name
    assert grads[0].dtype == dtype and grads[0].stride() == x.stride()


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("shape", [(5, 32, 64, 64), (3, 64, 64, 64)], ids=["per-thread", "direct"])
def test_gradient_subsets(kernel_lib, dtype, shape):
    # dweight without dbias and the reverse: the batch sums take only the terms that were asked for
    x, w, b, _, _, _, grad = _case(shape, "contiguous", dtype, False)
    y, mean, rstd = kernels.forward(x, w, b, 8, 1e-5, "none", None, None, None)
    full = kernels.backward(
        grad, x, w, b, mean, rstd, 8, "none", None, None, None, [True, True, True] + [False] * 3
    )
    only_w = kernels.backward(
        grad, x, w, b, mean, rstd, 8, "none", None, None, None, [False, True, False] + [False] * 3
    )
    only_b = kernels.backward(
        grad, x, w, b, mean, rstd, 8, "none", None, None, None, [False, False, True] + [False] * 3
    )
    assert torch.equal(only_w[1], full[1]) and only_w[0].numel() == 0 and only_w[2].numel() == 0
    assert torch.equal(only_b[2], full[2]) and only_b[1].numel() == 0


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_non_finite_values_and_subnormal_outputs(kernel_lib, dtype):
    x = torch.randn(2, 32, 6, 6)
    x[0, 0, 0, 0] = float("nan")
    x[1, 5, 1, 1] = float("inf")
    x = x.to(dtype)
    shift = torch.zeros(2, 32)
    shift[1, 20] = -float("inf")
    y, _, _ = kernels.forward(x, None, None, 8, 1e-5, "silu", None, None, shift)
    want, _, _ = kernels.forward(x.float(), None, None, 8, 1e-5, "silu", None, None, shift)
    want = want.to(dtype)
    assert torch.equal(torch.isnan(y), torch.isnan(want))
    assert torch.equal(y.nan_to_num(), want.nan_to_num())
    # outputs below the type's smallest normal number are rounded, not flushed to zero
    tiny = 1e-39 if dtype == torch.bfloat16 else 1e-6
    z = torch.randn(1, 16, 4, 4).to(dtype)
    y, _, _ = kernels.forward(z, torch.full((16,), tiny), None, 4, 1e-5, "none", None, None, None)
    want, _, _ = kernels.forward(z.float(), torch.full((16,), tiny), None, 4, 1e-5, "none", None, None, None)
    assert torch.equal(y, want.to(dtype)) and y.float().abs().max() > 0


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("shape", [(5, 32, 64, 64), (3, 64, 64, 64)], ids=["per-thread", "waves"])
def test_same_bits_for_one_and_two_threads(kernel_lib, dtype, shape):
    # with one thread every call takes the waves; with two, the first shape goes a sample per thread
    x, w, b, res, sc, sh, grad = _case(shape, "channels_last", dtype, True)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            y, mean, rstd = kernels.forward(x, w, b, 8, 1e-5, "silu", res, sc, sh)
            grads = kernels.backward(grad, x, w, b, mean, rstd, 8, "silu", res, sc, sh, [True] * 6)
            results.append((y, mean, rstd, *grads))
    finally:
        torch.set_num_threads(before)
    for a, b_ in zip(*results):
        assert torch.equal(a, b_)


def test_conversions_exhaustively(kernel_lib, tmp_path):
    """Every float16 widened and every float32 bit pattern narrowed, against the CPU's F16C instructions, and the
    vector conversions against the scalar ones (tests/cpu/conversions_check.c; about 10 s)."""
    binary = tmp_path / "conversions_check"
    source = Path(__file__).with_name("conversions_check.c")
    cmd = [build.compiler(), *build.cflags(), f"-I{build.CSRC}", str(source), "-o", str(binary)]
    compiled = subprocess.run([*cmd, "-lm"], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr
    ran = subprocess.run([str(binary)], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "mismatches: 0" in ran.stdout


def test_scalar_tail_conversions(kernel_lib):
    # 20 elements: one vector of 16 and a scalar tail of 4 holding a NaN, an infinity and subnormal results
    for dtype in HALF:
        x = torch.randn(1, 4, 5)
        x[0, 3, 1] = float("nan")
        x[0, 2, 4] = float("inf")
        x = x.to(dtype)
        tiny = 1e-39 if dtype == torch.bfloat16 else 1e-6
        w = torch.tensor([1.0, 1.0, 1.0, tiny])
        y, _, _ = kernels.forward(x, w, None, 4, 1e-5, "none", None, None, None)
        want, _, _ = kernels.forward(x.float(), w, None, 4, 1e-5, "none", None, None, None)
        want = want.to(dtype)
        assert torch.equal(torch.isnan(y), torch.isnan(want)), dtype
        assert torch.equal(y.nan_to_num(), want.nan_to_num()), dtype


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize(
    "shape", [(5, 32, 64, 64), (3, 64, 64, 64), (4, 24, 37)], ids=["per-thread", "direct", "1d"]
)
@pytest.mark.parametrize("act", ["none", "silu", "relu"])
@pytest.mark.parametrize(
    "mask",
    [
        [False, False, False, True, False, False],
        [False, True, True, True, True, True],
        [True, False, False, True, False, False],
    ],
    ids=["dresidual-only", "all-but-dx", "dx-and-dresidual"],
)
def test_residual_gradient_masks(kernel_lib, dtype, shape, act, mask):
    # where the activation's derivative is stored (dresidual, or dx's buffer) depends on which outputs are wanted
    x, w, b, res, sc, sh, grad = _case(shape, "contiguous", dtype, True)
    groups = 8
    y, mean, rstd = kernels.forward(x, w, b, groups, 1e-5, act, res, sc, sh)
    got = kernels.backward(grad, x, w, b, mean, rstd, groups, act, res, sc, sh, mask)
    _, mean32, rstd32 = kernels.forward(x.float(), w, b, groups, 1e-5, act, res.float(), sc, sh)
    want = kernels.backward(
        grad.float(), x.float(), w, b, mean32, rstd32, groups, act, res.float(), sc, sh, mask
    )
    for wanted, a, e in zip(mask, got, want):
        assert (a.numel() > 0) == wanted
        if wanted:
            assert torch.equal(a, e.to(a.dtype))
