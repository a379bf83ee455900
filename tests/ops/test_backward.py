"""Gradients of the op: against the float64 reference, torch in the same precision, gradcheck and double backward.

Every test takes the ``implementation`` fixture (tests/conftest.py): without it the small float32 calls here would
be served by torch's own group_norm, and the comparison with torch would compare torch with itself.
"""

import pytest
import torch
import torch.nn.functional as F

import groupnorm
from groupnorm.reference import group_norm_ref
from groupnorm.testing import (
    assert_close_verbose,
    assert_no_worse_than_torch,
    make_input,
    shape_layout_cases,
    torch_group_norm_accepts,
)

GRAD_ATOL = {torch.float32: 2e-4, torch.float64: 1e-9, torch.bfloat16: 6e-2, torch.float16: 1e-2}


def _grads(fn, x, weight, bias, grad_out):
    leaves = [t.detach().requires_grad_() for t in (x, weight, bias)]
    out = fn(*leaves)
    return torch.autograd.grad(out, leaves, grad_out.to(out.dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("named,layout", shape_layout_cases(), ids=lambda v: str(v))
def test_gradients_match_reference_and_torch(named, layout, dtype, implementation):
    x = make_input(named.shape, dtype, layout)
    c = named.shape[1]
    weight = make_input((c,), dtype, seed=1)
    bias = make_input((c,), dtype, seed=2)
    grad_out = make_input(named.shape, torch.float64, layout, seed=3)
    g = named.num_groups

    ours = _grads(lambda a, w, b: groupnorm.group_norm(a, g, w, b), x, weight, bias, grad_out)
    implementation.assert_implementation(calls=1)
    ref = _grads(
        lambda a, w, b: group_norm_ref(a, g, w, b), x.double(), weight.double(), bias.double(), grad_out
    )
    assert ours[0].stride() == torch.empty_like(x).stride(), "dx keeps x's memory format"
    atol = GRAD_ATOL[dtype]
    for name, got, want in zip(("dx", "dweight", "dbias"), ours, ref):
        assert got.dtype == dtype
        # dweight/dbias sum over N * spatial terms: scale the tolerance with the sum's length.
        scale = (
            1.0
            if name == "dx"
            else max(1.0, (got.new_tensor(named.shape[2:]).prod().item() * named.shape[0]) ** 0.5)
        )
        if torch_group_norm_accepts(named.shape):
            theirs = _grads(lambda a, w, b: F.group_norm(a, g, w, b), x, weight, bias, grad_out)
            index = ("dx", "dweight", "dbias").index(name)
            assert_no_worse_than_torch(got, theirs[index], want, atol=atol * scale, name=name)
        else:
            assert_close_verbose(got, want, atol=atol * scale, rtol=atol, name=name)


def test_gradcheck_every_input_float64(implementation):
    gen = torch.Generator().manual_seed(0)
    shape = (2, 6, 3, 2)
    tensors = [
        torch.randn(shape, generator=gen, dtype=torch.float64),  # x
        torch.randn(6, generator=gen, dtype=torch.float64),  # weight
        torch.randn(6, generator=gen, dtype=torch.float64),  # bias
        torch.randn(shape, generator=gen, dtype=torch.float64),  # residual
        torch.randn(2, 6, generator=gen, dtype=torch.float64),  # scale
        torch.randn(2, 6, generator=gen, dtype=torch.float64),  # shift
    ]
    inputs = tuple(t.requires_grad_() for t in tensors)
    for activation in ("none", "silu", "gelu_tanh"):

        def fn(x, w, b, r, s, t, activation=activation):
            return groupnorm.group_norm(x, 3, w, b, activation=activation, residual=r, scale=s, shift=t)

        assert torch.autograd.gradcheck(fn, inputs)
        # Double backward works: the autograd formula switches to differentiable torch ops under create_graph.
        assert torch.autograd.gradgradcheck(fn, inputs)
    implementation.assert_implementation()


def test_only_requested_gradients_are_computed(implementation):
    x = torch.randn(2, 8, 4, requires_grad=True)
    weight = torch.randn(8)  # no grad wanted
    bias = torch.randn(8, requires_grad=True)
    groupnorm.group_norm(x, 2, weight, bias).sum().backward()
    implementation.assert_implementation(calls=1)
    assert x.grad is not None and bias.grad is not None and weight.grad is None


def test_backward_op_returns_empty_for_masked_gradients():
    x = torch.randn(2, 8, 4)
    y, mean, rstd = torch.ops.groupnorm.forward(x, None, None, 2, 1e-5, "relu", None, None, None)
    grads = torch.ops.groupnorm.backward(
        torch.ones_like(y),
        x,
        None,
        None,
        mean,
        rstd,
        2,
        "relu",
        None,
        None,
        None,
        [True, True, True, True, True, True],
    )
    assert grads[0].shape == x.shape
    assert all(g.numel() == 0 for g in grads[1:])
