"""The op in plain torch: the implementation every device falls back to.

Arithmetic runs in the accumulation dtype (float32, or float64 for float64 inputs); the statistics come from
``torch.var_mean``, which does not cancel when |mean| >> std. The backward is written with differentiable torch
ops, so the autograd formula can call it directly when a second derivative is asked for.
"""

from __future__ import annotations

import torch

from groupnorm.activations import activation_derivative, apply_activation
from groupnorm.ops.checks import accumulation_dtype

NUM_GRADS = 6  # dx, dweight, dbias, dresidual, dscale, dshift


def _group_view(t: torch.Tensor, num_groups: int) -> torch.Tensor:
    """(N, C, *spatial) -> (N, G, C/G, *spatial) as a view, whatever the strides (channels_last included)."""
    return t.unflatten(1, (num_groups, t.shape[1] // num_groups))


def _stat_view(stat: torch.Tensor, rank: int) -> torch.Tensor:
    """(N, G) statistics broadcastable against a grouped (N, G, C/G, *spatial) tensor."""
    return stat.reshape(stat.shape + (1,) * (rank - 2))


def _channel_view(t: torch.Tensor, rank: int, acc: torch.dtype) -> torch.Tensor:
    """(C,) or (N, C) parameters broadcastable against (N, C, *spatial)."""
    return t.to(acc).reshape((1,) * (2 - t.dim()) + tuple(t.shape) + (1,) * (rank - 2))


def normalized(x: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, num_groups: int) -> torch.Tensor:
    """x_hat = (x - mean) * rstd in the statistics' dtype, shaped like x."""
    grouped = _group_view(x.to(mean.dtype), num_groups)
    rank = grouped.dim()
    return ((grouped - _stat_view(mean, rank)) * _stat_view(rstd, rank)).flatten(1, 2)


def _affine(xhat: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
    out = xhat
    if weight is not None:
        out = out * _channel_view(weight, xhat.dim(), xhat.dtype)
    if bias is not None:
        out = out + _channel_view(bias, xhat.dim(), xhat.dtype)
    return out


def _pre_activation(
    affine_out: torch.Tensor,
    residual: torch.Tensor | None,
    scale: torch.Tensor | None,
    shift: torch.Tensor | None,
) -> torch.Tensor:
    out = affine_out
    rank, acc = out.dim(), out.dtype
    if scale is not None:
        out = out * (1.0 + _channel_view(scale, rank, acc))
    if shift is not None:
        out = out + _channel_view(shift, rank, acc)
    if residual is not None:
        out = out + residual.to(acc)
    return out


def _sum_spatial(t: torch.Tensor) -> torch.Tensor:
    """Sum over the spatial dimensions, (N, C, *spatial) -> (N, C). Careful: ``sum(dim=())`` sums everything."""
    return t.sum(dim=tuple(range(2, t.dim()))) if t.dim() > 2 else t


def statistics(x: torch.Tensor, num_groups: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-(sample, group) mean and 1/sqrt(var + eps), shape (N, G), in the accumulation dtype."""
    acc = accumulation_dtype(x.dtype)
    grouped = _group_view(x, num_groups).to(acc)
    if x.numel() == 0:  # an empty batch: no statistics to compute (var_mean would warn about 0 / 0)
        mean = grouped.new_zeros(grouped.shape[:2])
        return mean, torch.full_like(mean, eps).rsqrt()
    var, mean = torch.var_mean(grouped, dim=tuple(range(2, grouped.dim())), correction=0)
    return mean, torch.rsqrt(var + eps)


def forward(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    num_groups: int,
    eps: float,
    activation: str,
    residual: torch.Tensor | None,
    scale: torch.Tensor | None,
    shift: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(y, mean, rstd)``; y keeps x's dtype and strides (``empty_like``), like the op's fake implementation."""
    mean, rstd = statistics(x, num_groups, eps)
    xhat = normalized(x, mean, rstd, num_groups)
    z = _pre_activation(_affine(xhat, weight, bias), residual, scale, shift)
    y = torch.empty_like(x)
    y.copy_(apply_activation(z, activation))
    return y, mean, rstd


def backward_differentiable(
    grad_y: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    num_groups: int,
    activation: str,
    residual: torch.Tensor | None,
    scale: torch.Tensor | None,
    shift: torch.Tensor | None,
    output_mask: list[bool],
) -> list[torch.Tensor | None]:
    """Gradients ``[dx, dweight, dbias, dresidual, dscale, dshift]`` (None where masked out or absent).

    Pure torch ops throughout, so the result is itself differentiable (double backward).
    """
    want_dx, want_dw, want_db, want_dres, want_dscale, want_dshift = output_mask
    acc = mean.dtype
    rank = x.dim()
    batch_and_spatial = (0, *range(2, rank))

    xhat = normalized(x, mean, rstd, num_groups)
    affine_out = _affine(xhat, weight, bias)
    grad = grad_y.to(acc)
    derivative = None
    if activation != "none":
        derivative = activation_derivative(_pre_activation(affine_out, residual, scale, shift), activation)
    grad_pre = grad if derivative is None else grad * derivative

    grads: list[torch.Tensor | None] = [None] * NUM_GRADS
    if want_dres and residual is not None:
        grads[3] = grad_pre.to(residual.dtype)
    if want_dscale and scale is not None:
        grads[4] = _sum_spatial(grad_pre * affine_out).to(scale.dtype)
    if want_dshift and shift is not None:
        grads[5] = _sum_spatial(grad_pre).to(shift.dtype)

    grad_affine = grad_pre if scale is None else grad_pre * (1.0 + _channel_view(scale, rank, acc))
    if want_db and bias is not None:
        grads[2] = grad_affine.sum(dim=batch_and_spatial).to(bias.dtype)
    if want_dw and weight is not None:
        grads[1] = (grad_affine * xhat).sum(dim=batch_and_spatial).to(weight.dtype)
    if want_dx:
        grad_xhat = grad_affine if weight is None else grad_affine * _channel_view(weight, rank, acc)
        gg, xg = _group_view(grad_xhat, num_groups), _group_view(xhat, num_groups)
        group_dims = tuple(range(2, gg.dim()))
        mean_g = gg.mean(dim=group_dims, keepdim=True)
        mean_gx = (gg * xg).mean(dim=group_dims, keepdim=True)
        dx = _stat_view(rstd, gg.dim()) * (gg - mean_g - xg * mean_gx)
        grads[0] = dx.flatten(1, 2).to(x.dtype)
    return grads


def backward(
    grad_y: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    num_groups: int,
    activation: str,
    residual: torch.Tensor | None,
    scale: torch.Tensor | None,
    shift: torch.Tensor | None,
    output_mask: list[bool],
) -> tuple[torch.Tensor, ...]:
    """The registered backward: six tensors, an empty one where a gradient is masked out or has no input.

    Gradients take the layout of the tensor they belong to (``empty_like``), as the fake implementation says.
    """
    grads = backward_differentiable(
        grad_y, x, weight, bias, mean, rstd, num_groups, activation, residual, scale, shift, output_mask
    )
    owners = (x, weight, bias, residual, scale, shift)
    out = []
    for grad, owner in zip(grads, owners):
        if grad is None:
            out.append(x.new_empty(0))
        else:
            buffer = torch.empty_like(owner)
            buffer.copy_(grad)
            out.append(buffer)
    return tuple(out)
