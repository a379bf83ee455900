"""``groupnorm.group_norm``: torch's positional order, group_size, and the edge cases users hit.

Comparisons with torch take the ``implementation`` fixture (tests/conftest.py): small plain float32 calls are
otherwise served by torch's own group_norm, which would compare torch with itself.
"""

import math

import pytest
import torch
import torch.nn.functional as F

import groupnorm
from groupnorm.reference import group_norm_ref
from groupnorm.testing import assert_close_verbose


def test_positional_order_is_torchs(implementation):
    x, w, b = torch.randn(2, 8, 5), torch.randn(8), torch.randn(8)
    assert_close_verbose(
        groupnorm.group_norm(x, 4, w, b, 1e-3), F.group_norm(x, 4, w, b, 1e-3), atol=1e-5, rtol=1e-5
    )
    implementation.assert_implementation(calls=1)


def test_group_size_is_channels_per_group(implementation):
    x = torch.randn(2, 12, 3, 3)
    assert torch.equal(groupnorm.group_norm(x, group_size=4), groupnorm.group_norm(x, 3))
    implementation.assert_implementation(calls=2)


def test_eps_zero_is_allowed_like_torch(implementation):
    x = torch.randn(2, 8, 4)
    assert_close_verbose(
        groupnorm.group_norm(x, 2, eps=0.0), F.group_norm(x, 2, eps=0.0), atol=1e-5, rtol=1e-5
    )
    implementation.assert_implementation(calls=1)


def test_empty_batch_returns_empty_like_torch():
    x = torch.randn(0, 8, 3, 3, requires_grad=True)
    y = groupnorm.group_norm(x, 4, torch.ones(8), torch.zeros(8))
    assert y.shape == F.group_norm(x, 4).shape == (0, 8, 3, 3)
    y.sum().backward()
    assert x.grad.shape == x.shape


def test_single_element_group_normalizes_to_zero():
    # torch raises for N * spatial == 1; we define x_hat = 0 there, so y is the bias (then the epilogue).
    x = torch.randn(1, 4, 1, 1)
    bias = torch.tensor([1.0, 2.0, 3.0, 4.0])
    y = groupnorm.group_norm(x, 4, torch.ones(4), bias, activation="relu")
    assert torch.equal(y.flatten(), bias)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_inputs_propagate_like_torch(bad, implementation):
    x = torch.randn(2, 8, 3, 3)
    x[0, 0, 1, 1] = bad  # poisons sample 0, group 0 only
    ours = groupnorm.group_norm(x, 4)
    implementation.assert_implementation(calls=1)
    theirs = F.group_norm(x, 4)
    assert torch.equal(torch.isnan(ours), torch.isnan(theirs))
    assert torch.equal(torch.isinf(ours), torch.isinf(theirs))
    finite = torch.isfinite(theirs)
    assert_close_verbose(ours[finite], theirs[finite], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(ours[1]).all() and torch.isfinite(ours[0, 2:]).all()


def test_float64_input_keeps_float64_statistics():
    x = torch.randn(2, 6, 4, dtype=torch.float64)
    _, mean, rstd = torch.ops.groupnorm.forward(x, None, None, 3, 1e-5, "none", None, None, None)
    assert mean.dtype == rstd.dtype == torch.float64
    assert_close_verbose(groupnorm.group_norm(x, 3), group_norm_ref(x, 3), atol=1e-12, rtol=1e-12)


def test_float32_weights_with_bfloat16_input():
    x = torch.randn(2, 8, 4).bfloat16()
    w, b = torch.randn(8), torch.randn(8)
    y = groupnorm.group_norm(x, 4, w, b)
    assert y.dtype == torch.bfloat16
    assert_close_verbose(y, group_norm_ref(x, 4, w, b), atol=3e-2, rtol=2e-2)
