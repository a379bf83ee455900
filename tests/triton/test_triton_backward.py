"""Backward kernels against autograd through the float64 reference: every gradient, layout, dtype and path."""

import pytest
import torch

from groupnorm.reference import group_norm_ref
from groupnorm.testing import TOLERANCES, assert_close_verbose, make_input

pytestmark = pytest.mark.triton

GRAD_NAMES = ("dx", "dweight", "dbias", "dresidual", "dscale", "dshift")


def _inputs(shape, dtype, layout, *, groups, epilogue=True, param_dtype=None, seed=0):
    x = make_input(shape, dtype, layout, scale=2.0, offset=0.5, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    n, c = shape[:2]
    param_dtype = param_dtype or dtype
    weight = torch.randn(c, generator=gen).to(param_dtype)
    bias = torch.randn(c, generator=gen).to(param_dtype)
    residual = scale = shift = None
    if epilogue:
        residual = torch.randn(shape, generator=gen).to(dtype)
        scale = (0.5 * torch.randn(n, c, generator=gen)).to(param_dtype)
        shift = torch.randn(n, c, generator=gen).to(param_dtype)
    grad_y = torch.randn(shape, generator=gen).to(dtype)
    return dict(x=x, weight=weight, bias=bias, residual=residual, scale=scale, shift=shift, grad_y=grad_y)


def _reference_grads(inp, groups, activation):
    names = ("x", "weight", "bias", "residual", "scale", "shift")
    leaves = {k: (None if inp[k] is None else inp[k].double().requires_grad_()) for k in names}
    y = group_norm_ref(
        leaves["x"],
        groups,
        leaves["weight"],
        leaves["bias"],
        activation=activation,
        residual=leaves["residual"],
        scale=leaves["scale"],
        shift=leaves["shift"],
    )
    present = [leaves[k] for k in names if leaves[k] is not None]
    grads = iter(torch.autograd.grad(y, present, inp["grad_y"].double()))
    return [None if leaves[k] is None else next(grads) for k in names]


def _run(kernels, inp, groups, activation, path, mask=(True,) * 6):
    y, mean, rstd = kernels.forward(
        inp["x"],
        inp["weight"],
        inp["bias"],
        groups,
        1e-5,
        activation,
        inp["residual"],
        inp["scale"],
        inp["shift"],
        path=path,
    )
    return kernels.backward(
        inp["grad_y"],
        inp["x"],
        inp["weight"],
        inp["bias"],
        mean,
        rstd,
        groups,
        activation,
        inp["residual"],
        inp["scale"],
        inp["shift"],
        mask,
        path=path,
    )


def _assert_grads_close(ours, expected, dtype):
    atol, rtol = TOLERANCES[dtype]
    for name, got, want in zip(GRAD_NAMES, ours, expected, strict=True):
        if want is None:
            assert got.numel() == 0, f"{name} has no input and must be empty"
            continue
        # Gradients are sums over many elements: scale the tolerance with their magnitude.
        scale = max(1.0, want.abs().max().item())
        assert_close_verbose(got, want, atol=atol * scale, rtol=rtol, name=name)


@pytest.mark.parametrize(
    "path,activation",
    [(path, act) for path in ("one_pass", "split") for act in ("none", "relu", "silu", "gelu", "gelu_tanh")]
    + [("waves", "gelu_tanh")],
)
def test_all_gradients_every_activation(kernels, activation, path):
    inp = _inputs((2, 12, 5, 7), torch.float32, "channels_last", groups=3)
    ours = _run(kernels, inp, 3, activation, path)
    _assert_grads_close(ours, _reference_grads(inp, 3, activation), torch.float32)
    assert ours[0].stride() == inp["x"].stride(), "dx must keep x's memory format"
    assert ours[3].stride() == inp["residual"].stride()


@pytest.mark.parametrize(
    "shape,groups,layout",
    [
        ((4, 6), 3, "contiguous"),  # rank 2: one position per channel
        ((3, 12, 17), 3, "contiguous"),  # rank 3 sequence
        ((2, 16, 5, 5), 1, "channels_last"),  # G == 1: layer norm
        ((2, 16, 5, 5), 16, "contiguous"),  # G == C: instance norm
        ((3, 32, 1, 1), 8, "channels_last"),  # one pixel
        ((2, 8, 3, 4, 5), 4, "channels_last"),  # video, channels_last_3d
    ],
    ids=["rank2", "rank3", "G1", "GC", "one_pixel", "video_cl3d"],
)
@pytest.mark.parametrize("path", ["one_pass", "split"])
def test_named_shapes_plain_affine(kernels, shape, groups, layout, path):
    inp = _inputs(shape, torch.float32, layout, groups=groups, epilogue=False)
    ours = _run(kernels, inp, groups, "none", path)
    _assert_grads_close(ours, _reference_grads(inp, groups, "none"), torch.float32)


@pytest.mark.parametrize("param_dtype", ["input", "float32"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("path", ["one_pass", "waves"])
def test_low_precision(kernels, dtype, param_dtype, path):
    inp = _inputs(
        (2, 16, 6, 5),
        dtype,
        "channels_last",
        groups=4,
        param_dtype=dtype if param_dtype == "input" else torch.float32,
    )
    ours = _run(kernels, inp, 4, "silu", path)
    for got, owner in zip(
        ours, (inp[k] for k in ("x", "weight", "bias", "residual", "scale", "shift")), strict=True
    ):
        assert got.dtype == owner.dtype, "each gradient takes its input's dtype"
    _assert_grads_close(ours, _reference_grads(inp, 4, "silu"), dtype)


def test_grad_y_in_another_layout(kernels, path):
    # Autograd often hands a contiguous grad_y to a channels_last x (and a contiguous residual to it too).
    inp = _inputs((2, 8, 4, 6), torch.float32, "channels_last", groups=2)
    inp["grad_y"] = inp["grad_y"].contiguous()
    inp["residual"] = inp["residual"].contiguous()
    assert inp["grad_y"].stride() != inp["x"].stride()
    ours = _run(kernels, inp, 2, "gelu", path)
    _assert_grads_close(ours, _reference_grads(inp, 2, "gelu"), torch.float32)
    assert ours[3].stride() == inp["residual"].stride()


@pytest.mark.parametrize(
    "mask",
    [
        (True, False, False, False, False, False),
        (False, True, True, False, False, False),
        (False, False, False, True, True, True),
        (False,) * 6,
    ],
    ids=["dx_only", "params_only", "epilogue_only", "nothing"],
)
def test_output_mask(kernels, mask, path):
    inp = _inputs((2, 8, 3, 5), torch.float32, "contiguous", groups=4)
    ours = _run(kernels, inp, 4, "relu", path, mask)
    expected = _reference_grads(inp, 4, "relu")
    for name, wanted, got, want in zip(GRAD_NAMES, mask, ours, expected, strict=True):
        if not wanted:
            assert got.numel() == 0, f"{name} was not asked for and must be empty"
        else:
            assert_close_verbose(
                got, want, atol=1e-4 * max(1.0, want.abs().max().item()), rtol=1e-5, name=name
            )


def test_without_weight_and_bias(kernels, path):
    inp = _inputs((2, 8, 3, 3), torch.float32, "contiguous", groups=2)
    inp["weight"] = inp["bias"] = None
    ours = _run(kernels, inp, 2, "silu", path)
    _assert_grads_close(ours, _reference_grads(inp, 2, "silu"), torch.float32)


def test_bitwise_deterministic(kernels, path):
    inp = _inputs((2, 8, 5, 5), torch.bfloat16, "channels_last", groups=2)
    first = _run(kernels, inp, 2, "silu", path)
    second = _run(kernels, inp, 2, "silu", path)
    for name, a, b in zip(GRAD_NAMES, first, second, strict=True):
        assert torch.equal(a, b), f"{name} differs between two identical calls"


def test_64_bit_offsets_give_the_same_bits(kernels):
    from groupnorm.ops.triton.planner import Tuning

    inp = _inputs((2, 8, 3, 5), torch.float32, "channels_last", groups=4)
    tuning = kernels.paths["split"][1]
    wide = Tuning(**{**tuning.__dict__, "force_int64": True})
    y, mean, rstd = kernels.forward(
        inp["x"],
        inp["weight"],
        inp["bias"],
        4,
        1e-5,
        "silu",
        inp["residual"],
        inp["scale"],
        inp["shift"],
        path="split",
    )
    args = (
        inp["grad_y"],
        inp["x"],
        inp["weight"],
        inp["bias"],
        mean,
        rstd,
        4,
        "silu",
        inp["residual"],
        inp["scale"],
        inp["shift"],
    )
    narrow = kernels.backward(*args, path="split")
    wide_out = kernels.backward(*args, path="split", tuning=wide)
    for name, a, b in zip(GRAD_NAMES, narrow, wide_out, strict=True):
        assert torch.equal(a, b), name
