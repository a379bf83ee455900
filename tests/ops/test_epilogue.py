"""Every epilogue (activation, residual, per-sample scale/shift), forward and backward, against the reference.

On the implementation whatever the size (the ``implementation`` fixture, tests/conftest.py): plain and ReLU/residual
float32 calls of this size would otherwise be torch's own ops.
"""

import itertools

import pytest
import torch

import groupnorm
from groupnorm.activations import ACTIVATIONS
from groupnorm.reference import group_norm_ref
from groupnorm.testing import TOLERANCES, assert_close_verbose, make_input, reference_with_grads

EXTRAS = [combo for r in range(4) for combo in itertools.combinations(("residual", "scale", "shift"), r)]


def _epilogue_inputs(x, extras, seed=3):
    gen = torch.Generator().manual_seed(seed)
    n, c = x.shape[:2]
    kwargs = {}
    if "residual" in extras:
        kwargs["residual"] = torch.randn(x.shape, generator=gen).to(x.dtype)
    if "scale" in extras:
        kwargs["scale"] = (0.5 * torch.randn(n, c, generator=gen)).to(x.dtype)
    if "shift" in extras:
        kwargs["shift"] = torch.randn(n, c, generator=gen).to(x.dtype)
    return kwargs


@pytest.mark.parametrize("extras", EXTRAS, ids=lambda e: "+".join(e) or "plain")
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_epilogue_forward(activation, extras, dtype, implementation):
    x = make_input((2, 16, 5, 3), dtype, "channels_last")
    weight, bias = torch.randn(16).to(dtype), torch.randn(16).to(dtype)
    kwargs = _epilogue_inputs(x, extras)
    y = groupnorm.group_norm(x, 4, weight, bias, activation=activation, **kwargs)
    implementation.assert_implementation(calls=1)
    expected = group_norm_ref(x, 4, weight, bias, activation=activation, **kwargs)
    atol, rtol = TOLERANCES[dtype]
    assert_close_verbose(y, expected, atol=2 * atol, rtol=2 * rtol, name=f"{activation}+{extras}")


@pytest.mark.parametrize("extras", [(), ("residual", "scale", "shift")], ids=["plain", "all"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_epilogue_backward_matches_reference_autograd(activation, extras, implementation):
    x = make_input((2, 16, 3, 5), torch.float32, "contiguous").requires_grad_()
    weight = torch.randn(16, requires_grad=True)
    bias = torch.randn(16, requires_grad=True)
    kwargs = {k: v.requires_grad_() for k, v in _epilogue_inputs(x.detach(), extras).items()}
    inputs = [x, weight, bias, *kwargs.values()]
    grad_out = torch.randn(x.shape, generator=torch.Generator().manual_seed(9))

    ours = torch.autograd.grad(
        groupnorm.group_norm(x, 4, weight, bias, activation=activation, **kwargs), inputs, grad_out
    )
    implementation.assert_implementation(calls=1)
    _, ref_grads = reference_with_grads(x, 4, weight, bias, activation=activation, grad_y=grad_out, **kwargs)
    expected = [g for g in ref_grads if g is not None]  # dx, dweight, dbias, then kwargs' in their order
    names = ["dx", "dweight", "dbias", *(f"d{k}" for k in kwargs)]
    for name, got, want in zip(names, ours, expected):
        assert got.dtype == torch.float32
        assert_close_verbose(got, want, atol=1e-4, rtol=1e-4, name=f"{activation}: {name}")
