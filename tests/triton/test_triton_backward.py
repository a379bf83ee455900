"""Backward kernels: what the conformance suite (test_triton_conformance.py) does not cover -- grad_y and
residual in another layout than x, output masks, determinism, 64-bit offsets."""

import pytest
import torch

from groupnorm.testing import (
    GRADIENT_NAMES,
    assert_close_verbose,
    gradient_tolerance,
    make_input,
    reference_with_grads,
)

pytestmark = pytest.mark.triton


def _inputs(shape, dtype, layout, *, groups, seed=0):
    x = make_input(shape, dtype, layout, scale=2.0, offset=0.5, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    n, c = shape[:2]
    weight = torch.randn(c, generator=gen).to(dtype)
    bias = torch.randn(c, generator=gen).to(dtype)
    residual = torch.randn(shape, generator=gen).to(dtype)
    scale = (0.5 * torch.randn(n, c, generator=gen)).to(dtype)
    shift = torch.randn(n, c, generator=gen).to(dtype)
    grad_y = torch.randn(shape, generator=gen).to(dtype)
    return dict(x=x, weight=weight, bias=bias, residual=residual, scale=scale, shift=shift, grad_y=grad_y)


def _reference_grads(inp, groups, activation):
    args = {k: inp[k] for k in ("weight", "bias", "residual", "scale", "shift", "grad_y")}
    return reference_with_grads(inp["x"], groups, activation=activation, **args)[1]


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
    for name, got, want in zip(GRADIENT_NAMES, ours, expected, strict=True):
        if want is None:
            assert got.numel() == 0, f"{name} has no input and must be empty"
            continue
        atol, rtol = gradient_tolerance(dtype, want)
        assert_close_verbose(got, want, atol=atol, rtol=rtol, name=name)


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
    for name, wanted, got, want in zip(GRADIENT_NAMES, mask, ours, expected, strict=True):
        if not wanted:
            assert got.numel() == 0, f"{name} was not asked for and must be empty"
        else:
            assert_close_verbose(
                got, want, atol=1e-4 * max(1.0, want.abs().max().item()), rtol=1e-5, name=name
            )


def test_bitwise_deterministic(kernels, path):
    inp = _inputs((2, 8, 5, 5), torch.bfloat16, "channels_last", groups=2)
    first = _run(kernels, inp, 2, "silu", path)
    second = _run(kernels, inp, 2, "silu", path)
    for name, a, b in zip(GRADIENT_NAMES, first, second, strict=True):
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
    for name, a, b in zip(GRADIENT_NAMES, narrow, wide_out, strict=True):
        assert torch.equal(a, b), name


class _KernelSpy:
    """A kernel module that records the names of the kernels looked up (launched) through it."""

    def __init__(self, module) -> None:
        self._module, self.launched = module, []

    def __getattr__(self, name: str):
        self.launched.append(name)
        return getattr(self._module, name)


@pytest.mark.parametrize(
    "residual_layout, grad_layout, mask, activation",
    [
        ("contiguous", "contiguous", (True,) * 6, "silu"),  # the residual addressed as a run too
        ("channels_last", "contiguous", (True,) * 6, "gelu"),  # the residual by its strides
        ("contiguous", "contiguous", (True, False, False, True, False, False), "silu"),  # no P, Q stored
        ("contiguous", "contiguous", (False, True, True, False, True, True), "none"),  # only the sums
        ("contiguous", "channels_last", (True,) * 6, "silu"),  # grad_y not a run: the tiled kernel
    ],
)
def test_nchw_groups_as_runs_take_the_flat_kernels(kernels, residual_layout, grad_layout, mask, activation):
    # 7 x 5 positions: no tile of [positions, channels] could vectorize; the flat kernels walk each group's run,
    # and their per-channel sums (a segmented scan) must equal the reference's.
    _check_flat_kernels(residual_layout, grad_layout, mask, activation)


@pytest.mark.parametrize("chunk", [16, 64])
@pytest.mark.parametrize("mask", [(True,) * 6, (True, False, False, True, False, False)])
def test_flat_backward_in_chunks_carries_channel_sums_across_them(mask, chunk):
    # A group of 4 channels x 35 positions walked 16 or 64 at a time: channel runs start, end and (16) pass
    # through whole chunks, so the scan's carry from one chunk to the next is what makes P and Q right.
    from groupnorm.ops.triton.planner import Tuning

    _check_flat_kernels(
        "contiguous", "contiguous", mask, "silu", Tuning(flat_backward_chunk_bytes=chunk * 4)
    )  # float32 inputs


@pytest.mark.parametrize("chunk", [8, 1024])
def test_flat_backward_64_bit_offsets_odd_groups_and_bf16(chunk):
    # 3 channels per group of 5 x 5 positions (a run of 75), bf16, chunked (8) and whole (1024): 64-bit offsets
    # give the same bits, and both match the reference.
    from groupnorm.ops.triton import launch, layout
    from groupnorm.ops.triton.planner import Tuning

    from .conftest import DEVICE, PATHS

    inp = _inputs((2, 9, 5, 5), torch.bfloat16, "contiguous", groups=3)
    spec = PATHS["one_pass"][0]
    tuning = Tuning(flat_backward_chunk_bytes=chunk * 2)  # bf16 inputs
    dev = {k: v.to(DEVICE) for k, v in inp.items()}
    extra = (dev["residual"], dev["scale"], dev["shift"])
    y, mean, rstd = launch.forward(dev["x"], dev["weight"], dev["bias"], 3, 1e-5, "silu", *extra, device=spec)
    args = (dev["grad_y"], dev["x"], dev["weight"], dev["bias"], mean, rstd, 3, "silu", *extra, [True] * 6)
    described = launch.backward_launch(
        *(layout.key(t) for t in args[:2]), dev["x"].device, 3, "silu", (True,) * 4,
        layout.key(extra[0]), (True,) * 6, spec, tuning,
    )  # fmt: skip
    assert described.flat and described.schedule.flat_chunk == chunk
    narrow = launch.backward(*args, device=spec, tuning=tuning)
    wide = launch.backward(*args, device=spec, tuning=Tuning(**{**tuning.__dict__, "force_int64": True}))
    for name, a, b in zip(GRADIENT_NAMES, narrow, wide, strict=True):
        assert torch.equal(a, b), name
    _assert_grads_close([t.cpu() for t in narrow], _reference_grads(inp, 3, "silu"), torch.bfloat16)


def _check_flat_kernels(residual_layout, grad_layout, mask, activation, tuning=None):
    from groupnorm.ops.triton import backward_kernels, forward_kernels, launch

    from .conftest import DEVICE, PATHS

    inp = _inputs((3, 12, 7, 5), torch.float32, "contiguous", groups=3)
    inp["residual"] = make_input((3, 12, 7, 5), torch.float32, residual_layout, seed=5)
    inp["grad_y"] = make_input((3, 12, 7, 5), torch.float32, grad_layout, seed=6)
    spec, default_tuning = PATHS["one_pass"]
    tuning = tuning or default_tuning
    fk, bk = _KernelSpy(forward_kernels), _KernelSpy(backward_kernels)
    dev = {k: v.to(DEVICE) for k, v in inp.items()}
    common = (dev["weight"], dev["bias"])
    extra = (dev["residual"], dev["scale"], dev["shift"])
    y, mean, rstd = launch.forward(
        dev["x"], *common, 3, 1e-5, activation, *extra, device=spec, tuning=tuning, fk=fk
    )
    ours = launch.backward(
        dev["grad_y"], dev["x"], *common, mean, rstd, 3, activation, *extra, list(mask),
        device=spec, tuning=tuning, bk=bk,
    )  # fmt: skip
    assert fk.launched == ["fwd_onepass_flat_kernel"]
    grad_is_run = grad_layout == "contiguous"
    main = "bwd_onepass_flat_kernel" if grad_is_run else "bwd_onepass_kernel"
    assert bk.launched == [main] + (["bwd_param_kernel"] if any(mask[i] for i in (1, 2, 4, 5)) else [])

    expected = _reference_grads(inp, 3, activation)
    for name, got, want, wanted in zip(GRADIENT_NAMES, ours, expected, mask, strict=True):
        if not wanted:
            assert got.numel() == 0, f"{name} was not asked for"
            continue
        atol, rtol = gradient_tolerance(torch.float32, want)
        assert_close_verbose(got.cpu(), want, atol=atol, rtol=rtol, name=name)
    if mask[0]:
        assert ours[0].stride() == inp["x"].stride()
