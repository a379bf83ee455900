"""The op's forward against the float64 reference and against torch, over the named shapes, dtypes and layouts."""

import pytest
import torch
import torch.nn.functional as F

import groupnorm  # noqa: F401
from groupnorm.reference import group_norm_ref
from groupnorm.testing import (
    TOLERANCES,
    assert_close_verbose,
    assert_no_worse_than_torch,
    make_input,
    shape_layout_cases,
    torch_group_norm_accepts,
)

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


def _params(c, dtype, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(c, generator=gen).to(dtype), torch.randn(c, generator=gen).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("named,layout", shape_layout_cases(), ids=lambda v: str(v))
def test_forward_matches_reference_and_torch(named, layout, dtype):
    x = make_input(named.shape, dtype, layout)
    weight, bias = _params(named.shape[1], dtype)
    y, mean, rstd = torch.ops.groupnorm.forward(
        x, weight, bias, named.num_groups, 1e-5, "none", None, None, None
    )

    expected = group_norm_ref(x, named.num_groups, weight, bias)
    atol, rtol = TOLERANCES[dtype]
    assert_close_verbose(y, expected, atol=atol, rtol=rtol, name="y vs reference")
    if torch_group_norm_accepts(named.shape):
        theirs = F.group_norm(x, named.num_groups, weight, bias)
        assert_no_worse_than_torch(y, theirs, expected, atol=atol, name="y vs torch")

    stats_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    assert y.dtype == dtype
    assert mean.shape == rstd.shape == (named.shape[0], named.num_groups)
    assert mean.dtype == rstd.dtype == stats_dtype
    grouped = x.double().reshape(named.shape[0], named.num_groups, -1)
    assert_close_verbose(mean, grouped.mean(-1), atol=1e-6, rtol=1e-6, name="mean")
    assert_close_verbose(
        rstd, (grouped.var(-1, unbiased=False) + 1e-5).rsqrt(), atol=1e-4, rtol=1e-5, name="rstd"
    )


@pytest.mark.parametrize("named,layout", shape_layout_cases(), ids=lambda v: str(v))
def test_forward_keeps_memory_format(named, layout):
    x = make_input(named.shape, torch.float32, layout)
    y, _, _ = torch.ops.groupnorm.forward(x, None, None, named.num_groups, 1e-5, "silu", None, None, None)
    assert y.stride() == torch.empty_like(x).stride()
    if layout == "channels_last" and x.dim() == 4:
        assert y.is_contiguous(memory_format=torch.channels_last)
    if layout == "channels_last" and x.dim() == 5:
        assert y.is_contiguous(memory_format=torch.channels_last_3d)


def test_forward_non_contiguous_view(implementation):
    base = torch.randn(4, 16, 6, 10)
    x = base[::2, :, :, ::2]  # strided view, neither contiguous nor channels_last
    y = groupnorm.group_norm(x, 4)
    implementation.assert_implementation(calls=1)
    assert_close_verbose(y, group_norm_ref(x, 4), atol=2e-5, rtol=1e-5, name="strided view")


def test_forward_higher_rank_runs_plain_torch(implementation):
    x = torch.randn(2, 8, 3, 2, 2, 3)  # rank 6
    y = groupnorm.group_norm(x, 2, activation="gelu")
    implementation.assert_implementation("torch", calls=1)
    assert_close_verbose(y, group_norm_ref(x, 2, activation="gelu"), atol=2e-5, rtol=1e-5, name="rank 6")


def test_statistics_do_not_cancel_for_large_mean(implementation):
    # |mean| / std = 1e4 in float32: a bare E[x^2] - E[x]^2 loses every digit of the variance here.
    x = make_input((2, 32, 16, 16), torch.float32, "contiguous", scale=1.0, offset=1e4)
    y = groupnorm.group_norm(x, 8)
    implementation.assert_implementation(calls=1)
    assert_close_verbose(y, group_norm_ref(x, 8), atol=5e-3, rtol=1e-3, name="large mean")


def test_half_precision_near_its_limits_does_not_overflow():
    # x^2 of 6e4 overflows float16; the statistics must be computed in float32.
    x = make_input((2, 8, 4, 4), torch.float16, "contiguous", scale=1e4, offset=3e4).clamp(-6e4, 6e4)
    y = groupnorm.group_norm(x, 4)
    assert torch.isfinite(y).all()
    assert_close_verbose(y, group_norm_ref(x, 4), atol=4e-3, rtol=4e-3, name="fp16 limits")
