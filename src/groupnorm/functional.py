"""``group_norm``: the functional entry point (validate, resolve the group count, call the registered op)."""

from __future__ import annotations

import torch

import groupnorm.ops  # noqa: F401  (registers torch.ops.groupnorm.*)
from groupnorm.activations import resolve_activation
from groupnorm.arguments import modulation, residual_like
from groupnorm.ops import eager, routing
from groupnorm.ops.checks import check_input, resolve_num_groups
from groupnorm.stats import GroupStats, check_stats, normalize_with_stats


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
    stats: GroupStats | None = None,
) -> torch.Tensor:
    """Group Normalization with an optional fused epilogue.

    The positional order is that of :func:`torch.nn.functional.group_norm`. Pass exactly one of ``num_groups`` and
    ``group_size`` (channels per group). The output is
    ``act((x_hat * weight + bias) * (1 + scale) + shift + residual)``: ``scale``/``shift`` are per-sample,
    per-channel (N, C) tensors (a diffusion model's time-embedding modulation; (N, C, 1, ..., 1), (1, C) and (C,)
    are taken too), ``residual`` has the input's shape or broadcasts to it (the end of a residual block),
    ``activation`` is ``None``, ``"relu"``, ``"silu"``, ``"gelu"`` (erf) or ``"gelu_tanh"`` (in any case, or an
    alias such as ``"swish"``, or a module such as ``nn.SiLU`` / ``nn.GELU(approximate="tanh")``: see
    :func:`groupnorm.activations.resolve_activation`). Statistics are computed in float32 (float64 for float64
    inputs); the output keeps the input's dtype and memory format. Gradients flow to every tensor argument.

    ``stats`` (a :class:`groupnorm.GroupStats` of shape (N, G) in the accumulation dtype) normalizes with given
    statistics instead of the input's own: a tile or spatial slice of an image normalized with the merged
    statistics of all parts (see :mod:`groupnorm.stats`). The group count may then be left out (it is the
    statistics'). That path runs plain torch ops recorded by autograd, so gradients also flow through ``stats``
    to the parts they were computed from.

    Example::

        >>> import torch, groupnorm
        >>> x = torch.randn(2, 64, 8, 8)
        >>> y = groupnorm.group_norm(x, 32, activation="silu")
        >>> y2 = groupnorm.group_norm(x, group_size=16, residual=x)
        >>> y.shape
        torch.Size([2, 64, 8, 8])
        >>> left = groupnorm.group_stats(x[..., :3], 32)
        >>> whole = left.merge(groupnorm.group_stats(x[..., 3:], 32))
        >>> y3 = groupnorm.group_norm(x[..., :3], 32, stats=whole, activation="silu")  # == y[..., :3]
    """
    if activation is None and residual is None and scale is None and shift is None and stats is None:
        if group_size is None:  # a plain call: where torch serves it, as directly as torch's own would run
            y = routing.plain_torch_call(input, num_groups, weight, bias, eps)
            if y is not None:
                return y
    check_input(input)
    # the shapes and names diffusers, timm and apex pass, resolved to the op's contract before anything reads them
    activation = resolve_activation(activation)
    scale, shift = modulation("scale", scale, input), modulation("shift", shift, input)
    residual = residual_like(residual, input)
    if stats is not None:
        if not isinstance(stats, GroupStats):
            raise TypeError(
                f"stats must be a groupnorm.GroupStats or None, got stats of type {type(stats).__name__}"
            )
        if num_groups is None and group_size is None:
            num_groups = stats.num_groups
        check_stats(stats, input, resolve_num_groups(input.shape[1], num_groups, group_size))
        return normalize_with_stats(
            input, stats, weight, bias, float(eps), activation, residual, scale, shift
        )
    groups = resolve_num_groups(input.shape[1], num_groups, group_size)
    args = (input, weight, bias, groups, float(eps), activation, residual, scale, shift)
    route = routing.route(*args)
    if route.via == "op":
        y, _mean, _rstd = torch.ops.groupnorm.forward(*args)
        return y
    return eager.run(route, *args)  # what the op would run, without the dispatcher's overhead
