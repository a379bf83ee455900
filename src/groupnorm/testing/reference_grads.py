"""The float64 ground truth of a call: output, statistics and every gradient of :func:`group_norm_ref`.

Gradients come from autograd through the plain formula, so they share no code with any implementation's
backward.
"""

from __future__ import annotations

import torch

from groupnorm.reference import group_norm_ref

GRADIENT_NAMES: tuple[str, ...] = ("dx", "dweight", "dbias", "dresidual", "dscale", "dshift")


def _leaf(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().double().cpu().requires_grad_(True)


def reference_with_grads(
    x: torch.Tensor,
    num_groups: int,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
    *,
    activation: str | None = None,
    residual: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    grad_y: torch.Tensor,
) -> tuple[torch.Tensor, tuple[torch.Tensor | None, ...]]:
    """The float64 output and its gradients for ``grad_y``: (dx, dweight, dbias, dresidual, dscale, dshift),
    ``None`` where the input is ``None`` (the order of :data:`GRADIENT_NAMES` and of the op's backward).

    Example::

        >>> x = torch.randn(2, 8, 3)
        >>> y, (dx, dweight, dbias, *_) = reference_with_grads(x, 4, torch.ones(8), grad_y=torch.ones_like(x))
        >>> y.dtype, dx.shape, dweight.shape, dbias
        (torch.float64, torch.Size([2, 8, 3]), torch.Size([8]), None)
    """
    leaves = [_leaf(t) for t in (x, weight, bias, residual, scale, shift)]
    xd, wd, bd, rd, sd, hd = leaves
    y = group_norm_ref(xd, num_groups, wd, bd, eps, activation=activation, residual=rd, scale=sd, shift=hd)
    present = [t for t in leaves if t is not None]
    grads = iter(torch.autograd.grad(y, present, grad_y.detach().double().cpu()))
    return y.detach(), tuple(None if t is None else next(grads) for t in leaves)


def reference_statistics(
    x: torch.Tensor, num_groups: int, eps: float = 1e-5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-(sample, group) mean and ``1 / sqrt(biased variance + eps)`` in float64, shape (N, G)."""
    grouped = x.detach().double().cpu().reshape(x.shape[0], num_groups, -1)
    return grouped.mean(-1), (grouped.var(-1, correction=0) + eps).rsqrt()


def call_reference(call: dict) -> torch.Tensor:
    """:func:`group_norm_ref` of a call drawn by :func:`~groupnorm.testing.op_calls` (the op's arguments by
    name)."""
    return group_norm_ref(
        call["x"],
        call["num_groups"],
        call["weight"],
        call["bias"],
        call["eps"],
        activation=call["activation"],
        residual=call["residual"],
        scale=call["scale"],
        shift=call["shift"],
    )
