"""``group_norm``: the functional entry point (validate, resolve the group count, call the registered op)."""

from __future__ import annotations

import torch

import groupnorm.ops  # noqa: F401  (registers torch.ops.groupnorm.*)
from groupnorm.activations import canonical_activation
from groupnorm.ops import eager
from groupnorm.ops.checks import check_input, resolve_num_groups


def group_norm(
    input: torch.Tensor,
    num_groups: int | None = None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
    *,
    group_size: int | None = None,
    activation: str | None = None,
    residual: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
) -> torch.Tensor:
    """Group Normalization with an optional fused epilogue.

    The positional order is that of :func:`torch.nn.functional.group_norm`. Pass exactly one of ``num_groups`` and
    ``group_size`` (channels per group). The output is
    ``act((x_hat * weight + bias) * (1 + scale) + shift + residual)``: ``scale``/``shift`` are per-sample,
    per-channel (N, C) tensors (a diffusion model's time-embedding modulation), ``residual`` has the input's shape
    (the end of a residual block), ``activation`` is one of ``None``, ``"relu"``, ``"silu"``, ``"gelu"`` (erf) and
    ``"gelu_tanh"``. Statistics are computed in float32 (float64 for float64 inputs); the output keeps the input's
    dtype and memory format. Gradients flow to every tensor argument.

    Example::

        >>> import torch, groupnorm
        >>> x = torch.randn(2, 64, 8, 8)
        >>> y = groupnorm.group_norm(x, 32, activation="silu")
        >>> y2 = groupnorm.group_norm(x, group_size=16, residual=x)
        >>> y.shape
        torch.Size([2, 64, 8, 8])
    """
    check_input(input)
    groups = resolve_num_groups(input.shape[1], num_groups, group_size)
    args = (input, weight, bias, groups, float(eps), canonical_activation(activation), residual, scale, shift)
    if eager.eligible(input, weight, bias, residual, scale, shift):
        return eager.group_norm(*args)  # same implementation as the op, without the dispatcher's overhead
    y, _mean, _rstd = torch.ops.groupnorm.forward(*args)
    return y
