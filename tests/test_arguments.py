"""The epilogue's arguments in the shapes and names diffusers, timm and apex pass (resolved before the op)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import groupnorm
from groupnorm.activations import resolve_activation
from groupnorm.reference import group_norm_ref


def _x(layout="contiguous"):
    x = torch.randn(2, 8, 5, 6, dtype=torch.float64)
    return x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("shape", [(2, 8), (2, 8, 1, 1), (1, 8), (8,)])
def test_scale_and_shift_broadcast_with_gradients_to_what_was_passed(shape, layout):
    x = _x(layout).requires_grad_()
    scale = (0.3 * torch.randn(*shape, dtype=torch.float64)).requires_grad_()
    shift = torch.randn(*shape, dtype=torch.float64).requires_grad_()
    y = groupnorm.group_norm(x, 4, activation="silu", scale=scale, shift=shift)
    full = dict(scale=scale.reshape(-1, 8).expand(2, 8), shift=shift.reshape(-1, 8).expand(2, 8))
    expected = group_norm_ref(x, 4, activation="silu", **full)
    torch.testing.assert_close(y, expected)
    dy = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, scale, shift), dy)
    want = torch.autograd.grad(expected, (x, scale, shift), dy)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("shape", [(2, 8, 1, 1), (8, 1, 1), (1, 1, 5, 6)])
def test_residual_broadcasts_to_the_input_with_gradients(shape, layout):
    x = _x(layout).requires_grad_()
    residual = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    y = groupnorm.group_norm(x, 4, activation="relu", residual=residual)
    expected = group_norm_ref(x, 4, activation="relu", residual=residual.expand(x.shape))
    torch.testing.assert_close(y, expected)
    assert y.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")
    (dr,) = torch.autograd.grad(y.sum(), residual)
    (want,) = torch.autograd.grad(expected.sum(), residual)
    torch.testing.assert_close(dr, want)


@pytest.mark.parametrize(
    "given,name",
    [("SiLU", "silu"), ("swish", "silu"), ("Swish", "silu"), ("GELU", "gelu"), ("gelu_pytorch_tanh", "gelu_tanh"),
     (nn.SiLU, "silu"), (nn.SiLU(), "silu"), (nn.ReLU(inplace=True), "relu"), (nn.ReLU, "relu"), (nn.GELU, "gelu"),
     (nn.GELU(approximate="tanh"), "gelu_tanh"), (nn.Identity(), "none"), (None, "none")],
)  # fmt: skip
def test_activation_names_and_modules(given, name):
    assert resolve_activation(given) == name
    x = _x()
    expected = group_norm_ref(x, 4, activation=name)
    torch.testing.assert_close(groupnorm.group_norm(x, 4, activation=given), expected)
    assert groupnorm.GroupNorm(4, 8, activation=given).activation == (None if name == "none" else name)


@pytest.mark.parametrize(
    "bad,match",
    [("mish", "activation='mish' is not an activation the op knows"),
     (nn.LeakyReLU(), r"activation=LeakyReLU\(negative_slope=0.01\) cannot be fused"),
     (nn.GELU(approximate="bogus"), "approximate must be 'none' or 'tanh', got approximate='bogus'"),
     (nn.Tanh, "activation=Tanh\\(\\) cannot be fused")],
)  # fmt: skip
def test_activations_the_op_cannot_reproduce_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        groupnorm.group_norm(_x(), 4, activation=bad)


@pytest.mark.parametrize(
    "arg,value,match",
    [("scale", torch.randn(2, 4), r"scale must have shape \(2, 8\), \(2, 8, 1, 1\), \(1, 8\) or \(8,\)"),
     ("shift", torch.randn(3, 8), r"shift must have shape .* got shift.shape=\(3, 8\)"),
     ("shift", torch.randn(2, 8, 1), r"shift must have shape .* got shift.shape=\(2, 8, 1\)"),
     ("scale", torch.randn(2, 8, 2, 1), r"scale.shape=\(2, 8, 2, 1\)"),
     ("residual", torch.randn(2, 8, 5, 2), r"residual must broadcast to the input's shape \(2, 8, 5, 6\), "
                                           r"got residual.shape=\(2, 8, 5, 2\)")],
)  # fmt: skip
def test_shapes_that_cannot_broadcast_name_the_argument(arg, value, match):
    with pytest.raises(ValueError, match=match):
        groupnorm.group_norm(_x(), 4, **{arg: value.double()})


def test_an_activation_subclass_with_its_own_forward_is_not_fused():
    class Leakyish(nn.ReLU):
        def forward(self, x):
            return torch.where(x > 0, x, 0.1 * x)

    with pytest.raises(ValueError, match="cannot be fused"):
        resolve_activation(Leakyish())

    class Quiet(nn.SiLU):  # a subclass that keeps torch's forward is still SiLU
        pass

    assert resolve_activation(Quiet()) == "silu"
