"""Numerics that users hit: large means, half-precision limits, huge groups; for every CPU implementation."""

import pytest
import torch

from groupnorm.reference import group_norm_ref
from groupnorm.testing import assert_close_verbose, implementations_under_test, make_input

IMPLEMENTATIONS = [target.implementation for target in implementations_under_test(devices=["cpu"])]


def _forward(impl, x, groups, eps=1e-5):
    if not impl.supports(x):
        pytest.skip(f"{impl.name} does not take {x.dtype} rank {x.dim()}")
    return impl.forward(x, None, None, groups, eps, "none", None, None, None)[0]


def naive_group_norm(x, groups, eps=1e-5):
    """The single-pass E[x^2] - E[x]^2 formula in float32: what a careless kernel computes."""
    g = x.float().reshape(x.shape[0], groups, -1)
    mean = g.mean(-1, keepdim=True)
    var = (g * g).mean(-1, keepdim=True) - mean * mean
    return ((g - mean) / torch.sqrt(var.clamp_min(0) + eps)).reshape(x.shape)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=lambda i: i.name)
@pytest.mark.parametrize(
    "dtype,ratio,atol",
    [(torch.float32, 1e4, 2e-3), (torch.bfloat16, 1e2, 3e-2), (torch.float16, 1e2, 4e-3)],
    ids=["fp32-1e4", "bf16-1e2", "fp16-1e2"],
)
def test_large_mean_relative_to_std(impl, dtype, ratio, atol):
    x = make_input((2, 32, 16, 16), dtype, offset=ratio)
    expected = group_norm_ref(x, 8)
    assert_close_verbose(
        _forward(impl, x, 8), expected, atol=atol, rtol=atol, name=f"{impl.name} mean/std={ratio}"
    )


def test_the_naive_formula_fails_where_the_implementations_pass():
    x = make_input((2, 32, 16, 16), torch.float32, offset=1e4)
    error = (naive_group_norm(x, 8).double() - group_norm_ref(x, 8)).abs().max().item()
    assert error > 0.1, "E[x^2] - E[x]^2 in float32 should lose the variance at mean/std = 1e4"


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=lambda i: i.name)
def test_half_precision_extremes_do_not_overflow_the_statistics(impl):
    # Values near the float16 maximum (65504): their squares overflow float16, not float32.
    x = make_input((2, 8, 6, 6), torch.float16, scale=2e4, offset=3e4).clamp(-65504, 65504)
    y = _forward(impl, x, 4)
    assert torch.isfinite(y).all()
    assert_close_verbose(y, group_norm_ref(x, 4), atol=4e-3, rtol=4e-3, name=f"{impl.name} fp16 extremes")


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=lambda i: i.name)
def test_group_of_2_pow_24_elements_keeps_float32_accuracy(impl):
    # 2^24 is where float32 stops counting exactly: a running sum of ones stalls there.
    x = make_input((1, 4, 1 << 22), torch.float32, offset=3.0)
    y = _forward(impl, x, 1)
    assert_close_verbose(
        y, group_norm_ref(x, 1), atol=2e-4, rtol=1e-4, name=f"{impl.name} 2^24-element group"
    )
