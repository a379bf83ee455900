"""What the op's registered autograd and the eager path's ``autograd.Function`` share: what the forward saves and
how the backward turns the saved tensors into input gradients.

Both nodes save the same tensors and call a backward with the backward op's signature (the op calls
``torch.ops.groupnorm.backward``, the eager node the implementation that ran its forward), so the two give the same
bits. When a second derivative is wanted (``create_graph=True``) both build the gradient from differentiable torch
ops instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from groupnorm.ops import torch_impl

# positions of the tensor arguments of the forward op (x, weight, bias, num_groups, eps, activation, residual,
# scale, shift) whose gradients the backward op returns, in its order (dx, dweight, dbias, dresidual, dscale, dshift)
GRADIENT_INPUTS = (0, 1, 2, 6, 7, 8)


def save(ctx, inputs: Sequence, mean: Tensor, rstd: Tensor) -> None:
    """Keep what the backward needs: the forward op's ``inputs`` and the statistics the forward computed."""
    x, weight, bias, num_groups, eps, activation, residual, scale, shift = inputs
    ctx.save_for_backward(x, weight, bias, mean, rstd, residual, scale, shift)
    ctx.num_groups = num_groups
    ctx.eps = eps
    ctx.activation = activation


def input_gradients(
    ctx, grad_y: Tensor, needs_input_grad: Sequence[bool], backward_fn: Callable[..., Sequence[Tensor]]
) -> tuple[Tensor | None, ...]:
    """One gradient per argument of the forward op (``None`` for the non-tensors and where none is wanted).

    ``needs_input_grad`` is indexed like the forward op's arguments; ``backward_fn`` has the backward op's
    signature and is not called when a second derivative is wanted.
    """
    mask = [bool(needs_input_grad[i]) for i in GRADIENT_INPUTS]
    x, weight, bias, mean, rstd, residual, scale, shift = ctx.saved_tensors
    args = (grad_y, x, weight, bias, mean, rstd, ctx.num_groups, ctx.activation, residual, scale, shift, mask)
    if torch.is_grad_enabled():
        # create_graph=True: a second derivative is wanted, so build the gradient from differentiable torch ops
        # (the kernels' backward has no derivative of its own). The saved statistics are constants to autograd;
        # recompute them from x so that their dependence on x is part of the graph.
        mean, rstd = torch_impl.statistics(x, ctx.num_groups, ctx.eps)
        grads = list(torch_impl.backward_differentiable(*args[:4], mean, rstd, *args[6:]))
    else:
        grads = [g if wanted else None for g, wanted in zip(backward_fn(*args), mask)]
    dx, dweight, dbias, dresidual, dscale, dshift = grads
    return dx, dweight, dbias, None, None, None, dresidual, dscale, dshift
