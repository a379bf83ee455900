"""The compiled CPU kernels against the float64 reference and against torch, forward and every gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from groupnorm.ops.cpu import kernels

from .helpers import TOLERANCES, assert_close_verbose, reference_with_grads

SHAPES = [
    pytest.param((1, 32, 1, 1), 8, id="one-pixel"),
    pytest.param((2, 64, 7, 9), 32, id="odd-spatial"),
    pytest.param((3, 12, 5, 5), 1, id="G1-layernorm"),
    pytest.param((2, 16, 6, 6), 16, id="G==C-instancenorm"),
    pytest.param((2, 48, 3, 4, 5), 6, id="3d-video"),
    pytest.param((2, 32, 37), 8, id="1d-sequence"),
    pytest.param((5, 24), 4, id="rank2"),
    pytest.param((1, 8, 48, 48), 2, id="group-spans-blocks"),
]

EPILOGUES = {
    "plain": dict(activation="none", residual=False, modulation=False, affine=True),
    "no-affine": dict(activation="none", residual=False, modulation=False, affine=False),
    "res-mod-no-act": dict(activation="none", residual=True, modulation=True, affine=True),
    "silu-res-mod": dict(activation="silu", residual=True, modulation=True, affine=True),
    "gelu-mod": dict(activation="gelu", residual=False, modulation=True, affine=True),
    "gelu_tanh-res": dict(activation="gelu_tanh", residual=True, modulation=False, affine=True),
    "relu-res": dict(activation="relu", residual=True, modulation=False, affine=True),
}

LAYOUTS = ["contiguous", "channels_last"]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def to_layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "channels_last" and t.dim() >= 3:
        return t.movedim(1, -1).contiguous().movedim(-1, 1)
    return t.contiguous()


def make_case(shape, layout, dtype, epi, seed=0):
    gen = torch.Generator().manual_seed(seed)
    n, c = shape[:2]

    def rnd(*s):
        return torch.randn(*s, generator=gen)

    # an offset mean: statistics must not cancel
    x = to_layout((rnd(*shape) * 2 + 3).to(dtype), layout)
    weight = rnd(c).to(dtype) if epi["affine"] else None
    bias = rnd(c).to(dtype) if epi["affine"] else None
    residual = to_layout(rnd(*shape).to(dtype), layout) if epi["residual"] else None
    scale = (0.5 * rnd(n, c)).to(dtype) if epi["modulation"] else None
    shift = rnd(n, c).to(dtype) if epi["modulation"] else None
    grad = to_layout(rnd(*shape).to(dtype), layout)
    return x, weight, bias, residual, scale, shift, grad


def torch_eager(x, groups, weight, bias, activation, residual, scale, shift):
    """torch's own ops in x's dtype: the 'same low precision' leg of the comparison."""
    n, c = x.shape[:2]
    view = (n, c) + (1,) * (x.dim() - 2)
    out = F.group_norm(x, groups, weight, bias)
    if scale is not None:
        out = out * (1 + scale.reshape(view))
    if shift is not None:
        out = out + shift.reshape(view)
    if residual is not None:
        out = out + residual
    acts = {"none": lambda t: t, "relu": F.relu, "silu": F.silu, "gelu": F.gelu}
    acts["gelu_tanh"] = lambda t: F.gelu(t, approximate="tanh")
    return acts[activation](out)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("epilogue", list(EPILOGUES))
@pytest.mark.parametrize("shape,groups", SHAPES)
def test_forward_and_gradients(kernel_lib, shape, groups, epilogue, layout, dtype):
    epi = EPILOGUES[epilogue]
    x, w, b, res, sc, sh, grad = make_case(shape, layout, dtype, epi)
    act = epi["activation"]
    y, mean, rstd = kernels.forward(x, w, b, groups, 1e-5, act, res, sc, sh)
    assert y.dtype == x.dtype and y.stride() == x.stride()
    assert mean.shape == (shape[0], groups) and mean.dtype == torch.float32 and rstd.dtype == torch.float32

    ref_y, ref_grads = reference_with_grads(x, groups, w, b, 1e-5, act, res, sc, sh, grad)
    atol, rtol = TOLERANCES[dtype]
    # three-way: within twice torch's own error in this dtype, plus the tolerance
    if x.numel() // (shape[1]) > 1:  # torch refuses a single value per channel
        theirs = torch_eager(x, groups, w, b, act, res, sc, sh).double()
        torch_err = (theirs - ref_y).abs()
        ours_err = (y.double() - ref_y).abs()
        limit = 2 * torch_err + atol + rtol * ref_y.abs()
        assert bool((ours_err <= limit).all()), (
            f"kernel error {ours_err.max():.3g} vs torch {torch_err.max():.3g}"
        )
    assert_close_verbose(y, ref_y, atol, rtol * 4, "y")
    grouped = x.double().reshape(shape[0], groups, -1)
    assert_close_verbose(mean, grouped.mean(-1), atol, rtol, "mean")

    grads = kernels.backward(grad, x, w, b, mean, rstd, groups, act, res, sc, sh, [True] * 6)
    names = ["dx", "dweight", "dbias", "dresidual", "dscale", "dshift"]
    owners = [x, w, b, res, sc, sh]
    for name, got, want, owner in zip(names, grads, ref_grads, owners):
        if owner is None:
            assert got.numel() == 0, f"{name} should be empty without its input"
            continue
        assert got.dtype == owner.dtype and got.stride() == owner.stride(), name
        # parameter gradients sum over many elements: scale the tolerance with the reference's size
        scale_ = want.abs().max().item() + 1.0
        assert_close_verbose(got, want, atol * scale_ * 4, rtol * 8, name)


@pytest.mark.parametrize(
    "mask", [[True, False, False, False, False, False], [False, True, True, False, True, True]]
)
def test_output_mask(kernel_lib, mask):
    epi = EPILOGUES["silu-res-mod"]
    x, w, b, res, sc, sh, grad = make_case((2, 32, 5, 5), "channels_last", torch.float32, epi)
    y, mean, rstd = kernels.forward(x, w, b, 8, 1e-5, "silu", res, sc, sh)
    full = kernels.backward(grad, x, w, b, mean, rstd, 8, "silu", res, sc, sh, [True] * 6)
    part = kernels.backward(grad, x, w, b, mean, rstd, 8, "silu", res, sc, sh, mask)
    for wanted, f, p in zip(mask, full, part):
        if wanted:
            assert torch.equal(f, p)
        else:
            assert p.numel() == 0


def test_non_dense_input_is_handled(kernel_lib):
    base = torch.randn(2, 32, 8, 16)
    x = base[..., ::2]  # strided: neither contiguous nor channels_last
    y, _, _ = kernels.forward(x, None, None, 8, 1e-5, "none", None, None, None)
    ref, _ = reference_with_grads(x, 8, None, None, 1e-5, "none", None, None, None, torch.ones_like(x))
    assert_close_verbose(y, ref, 2e-5, 2e-5, "y")


def test_residual_in_other_layout(kernel_lib):
    x = torch.randn(2, 32, 6, 6).contiguous(memory_format=torch.channels_last)
    res = torch.randn(2, 32, 6, 6)  # contiguous while x is channels_last
    grad = torch.randn(2, 32, 6, 6)
    y, mean, rstd = kernels.forward(x, None, None, 4, 1e-5, "silu", res, None, None)
    ref, ref_grads = reference_with_grads(x, 4, None, None, 1e-5, "silu", res, None, None, grad)
    assert_close_verbose(y, ref, 2e-5, 2e-5, "y")
    dx, _, _, dres, _, _ = kernels.backward(
        grad, x, None, None, mean, rstd, 4, "silu", res, None, None, [True] * 6
    )
    assert dres.stride() == res.stride()
    assert_close_verbose(dres, ref_grads[3], 2e-5, 2e-5, "dresidual")
    assert_close_verbose(dx, ref_grads[0], 1e-4, 1e-4, "dx")


def test_large_mean_does_not_cancel(kernel_lib):
    # |mean| / std = 1e4: E[x^2] - E[x]^2 in float32 would lose every digit of the variance
    x = torch.randn(2, 32, 16, 16, dtype=torch.float64) + 1e4
    y, _, rstd = kernels.forward(x.float(), None, None, 8, 1e-5, "none", None, None, None)
    std = x.reshape(2, 8, -1).std(-1, correction=0)
    assert torch.allclose(1 / rstd.double(), std, rtol=1e-3)
