"""Forward kernels: what the conformance suite (test_triton_conformance.py) does not cover -- planner paths
forced on particular shapes, special values, determinism, 64-bit offsets, the layouts the launcher refuses."""

import pytest
import torch

from groupnorm.reference import group_norm_ref
from groupnorm.testing import TOLERANCES, assert_close_verbose, make_input, reference_statistics

pytestmark = pytest.mark.triton

LOW_PRECISION = [torch.float16, torch.bfloat16]


def _params(c, dtype, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(c, generator=gen).to(dtype), torch.randn(c, generator=gen).to(dtype)


def _epilogue_inputs(x, seed=2):
    gen = torch.Generator().manual_seed(seed)
    n, c = x.shape[:2]
    residual = torch.randn(x.shape, generator=gen).to(x.dtype)
    if x.dim() == 4:
        residual = residual.contiguous(memory_format=torch.channels_last)  # a layout of its own
    scale = 0.5 * torch.randn(n, c, generator=gen)
    shift = torch.randn(n, c, generator=gen)
    return residual, scale, shift


def _check_stats(x, num_groups, mean, rstd, eps=1e-5):
    assert mean.dtype == rstd.dtype == torch.float32
    assert mean.shape == rstd.shape == (x.shape[0], num_groups)
    expected_mean, expected_rstd = reference_statistics(x, num_groups, eps)
    assert_close_verbose(mean, expected_mean, atol=1e-5, rtol=1e-5, name="mean")
    assert_close_verbose(rstd, expected_rstd, atol=1e-4, rtol=1e-4, name="rstd")


@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
def test_low_precision_epilogue_channels_last_3d(kernels, dtype):
    x = make_input((2, 8, 3, 4, 5), dtype, "channels_last", seed=5)
    assert x.is_contiguous(memory_format=torch.channels_last_3d)
    weight, bias = _params(8, torch.float32)
    residual, scale, shift = _epilogue_inputs(x)
    residual = residual.contiguous(memory_format=torch.channels_last_3d)
    y, _, _ = kernels.forward(x, weight, bias, 4, 1e-5, "gelu", residual, scale, shift, path="waves")
    assert y.is_contiguous(memory_format=torch.channels_last_3d)
    expected = group_norm_ref(
        x, 4, weight, bias, activation="gelu", residual=residual, scale=scale, shift=shift
    )
    atol, rtol = TOLERANCES[dtype]
    assert_close_verbose(y, expected, atol=2 * atol, rtol=rtol, name="y")


def test_large_mean_small_spread_keeps_precision(kernels, path):
    # |mean| >> std: a bare E[x^2] - E[x]^2 in float32 would lose the variance entirely.
    x = make_input((2, 8, 16, 16), torch.float32, offset=1000.0, scale=0.01, seed=6)
    y, mean, rstd = kernels.forward(x, None, None, 2, path=path)
    _check_stats(x, 2, mean, rstd)
    assert_close_verbose(y, group_norm_ref(x, 2), atol=2e-3, rtol=1e-3, name="y")


def test_constant_groups_normalize_to_zero(kernels, path):
    x = torch.full((2, 4, 3, 3), 7.0)
    y, mean, rstd = kernels.forward(x, None, None, 2, path=path)
    assert torch.all(y == 0) and torch.all(mean == 7.0)
    assert_close_verbose(rstd, torch.full((2, 2), 1e-5**-0.5), atol=0, rtol=1e-5, name="rstd")


def test_bitwise_deterministic(kernels, path):
    x = make_input((2, 16, 9, 11), torch.bfloat16, "channels_last", seed=7)
    weight, bias = _params(16, torch.bfloat16)
    first = kernels.forward(x, weight, bias, 4, 1e-5, "silu", path=path)
    second = kernels.forward(x, weight, bias, 4, 1e-5, "silu", path=path)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


def test_64_bit_offsets_give_the_same_bits(kernels, path):
    from groupnorm.ops.triton.planner import Tuning

    x = make_input((2, 8, 5, 6), torch.float32, "channels_last", seed=8)
    residual, scale, shift = _epilogue_inputs(x)
    tuning = kernels.paths[path][1]
    wide = Tuning(**{**tuning.__dict__, "force_int64": True})
    narrow_out = kernels.forward(x, None, None, 4, 1e-5, "relu", residual, scale, shift, path=path)
    wide_out = kernels.forward(x, None, None, 4, 1e-5, "relu", residual, scale, shift, path=path, tuning=wide)
    for a, b in zip(narrow_out, wide_out, strict=True):
        assert torch.equal(a, b)


def test_wide_group_loops_over_channel_blocks(kernels):
    # G = 1 with more channels than one tile holds: the channel loop of the split path.
    x = make_input((1, 24, 3, 3), torch.float32, "channels_last", seed=9)
    weight, bias = _params(24, torch.float32)
    y, _, _ = kernels.forward(x, weight, bias, 1, path="split")
    assert_close_verbose(y, group_norm_ref(x, 1, weight, bias), atol=2e-5, rtol=1e-5, name="y")


def test_rank3_transposed_layout_in_place(kernels):
    # (N, L, C) memory viewed as (N, C, L): dense, spatial stride C, handled without a copy.
    x = make_input((2, 10, 16), torch.float32, seed=10).transpose(1, 2)
    y, _, _ = kernels.forward(x, None, None, 4, path="split")
    assert y.stride() == x.stride()
    assert_close_verbose(y, group_norm_ref(x, 4), atol=2e-5, rtol=1e-5, name="y")


def test_refuses_what_it_cannot_address():
    from groupnorm.ops.triton import launch

    sliced = torch.randn(2, 8, 6, 6)[:, :, ::2]
    assert not launch.supports(sliced)
    assert not launch.supports(torch.randn(2, 8, 3, dtype=torch.float64))
    assert not launch.supports(torch.randn(1, 2, 2, 2, 2, 2))  # rank 6: plain-torch path
    assert launch.supports(torch.randn(2, 8, 3, 3).contiguous(memory_format=torch.channels_last))
    with pytest.raises(ValueError, match="stride"):
        launch.forward(sliced, None, None, 4, 1e-5, "none", None, None, None)
    with pytest.raises(ValueError, match="C=6 .* G=4"):
        launch.forward(torch.randn(2, 6, 3), None, None, 4, 1e-5, "none", None, None, None)


@pytest.mark.parametrize("path", ["split", "waves"])
def test_channels_last_units_of_several_groups(kernels, path):
    # 3 groups of 4 channels, units of 2 or 4 groups: the last unit of each sample is partly empty.
    from groupnorm.ops.triton import launch

    x = make_input((2, 12, 5, 7), torch.float32, "channels_last", seed=11)
    spec, tuning = kernels.paths[path]
    p = launch.plan_for(x, 3, x.element_size(), spec, tuning)
    assert p.block_g > 1 and 3 % p.block_g != 0 and not p.one_pass
    weight, bias = _params(12, torch.float32)
    y, mean, rstd = kernels.forward(x, weight, bias, 3, path=path)
    assert_close_verbose(y, group_norm_ref(x, 3, weight, bias), atol=2e-5, rtol=1e-5, name="y")
    _check_stats(x, 3, mean, rstd)
