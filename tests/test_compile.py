"""torch.compile takes the op whole: no graph breaks, same results."""

import pytest
import torch

import groupnorm
from groupnorm.activations import ACTIVATIONS
from groupnorm.testing import assert_close_verbose


class EveryEpilogue(torch.nn.Module):
    """Conv -> GN with residual, scale/shift and an activation: the epilogue of a diffusion ResNet block."""

    def __init__(self, activation: str):
        super().__init__()
        self.conv = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.weight = torch.nn.Parameter(torch.randn(8))
        self.bias = torch.nn.Parameter(torch.randn(8))
        self.activation = activation

    def forward(self, x, emb):
        scale, shift = emb.chunk(2, dim=1)
        h = self.conv(x)
        return groupnorm.group_norm(
            h, 4, self.weight, self.bias, activation=self.activation, residual=x, scale=scale, shift=shift
        )


def _inputs(n=2):
    return torch.randn(n, 8, 6, 6), torch.randn(n, 16)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_no_graph_breaks(activation):
    explanation = torch._dynamo.explain(EveryEpilogue(activation))(*_inputs())
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_aot_autograd_traces_the_backward_and_matches_eager():
    # aot_eager traces forward and backward (the registered autograd formula and backward op) into graphs,
    # without inductor's code generation.
    torch.manual_seed(0)
    model = EveryEpilogue("silu")
    x, emb = _inputs()
    x.requires_grad_()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    out = compiled(x, emb)
    grads = torch.autograd.grad(out.square().sum(), [x, *model.parameters()])
    expected = model(x, emb)
    expected_grads = torch.autograd.grad(expected.square().sum(), [x, *model.parameters()])
    assert_close_verbose(out, expected, atol=1e-6, rtol=1e-6, name="y")
    for got, want in zip(grads, expected_grads):
        assert_close_verbose(got, want, atol=1e-5, rtol=1e-5, name="grad")


@pytest.mark.slow
def test_inductor_fullgraph_forward_and_backward_match_eager():
    torch.manual_seed(0)
    model = EveryEpilogue("gelu")
    x, emb = _inputs()
    x.requires_grad_()
    compiled = torch.compile(model, fullgraph=True)
    out = compiled(x, emb)
    (grad_compiled,) = torch.autograd.grad(out.sum(), x)
    expected = model(x, emb)
    (grad_eager,) = torch.autograd.grad(expected.sum(), x)
    assert_close_verbose(out, expected, atol=1e-5, rtol=1e-5, name="y")
    assert_close_verbose(grad_compiled, grad_eager, atol=1e-5, rtol=1e-5, name="dx")
