"""Group statistics as a value: compute them on parts of an input, merge them, normalize each part with the whole.

A high-resolution image split into tiles (one device) or spatial slices (several devices) is normalized exactly
as the whole image when every part uses the statistics of the whole. This module holds the pieces:

* :class:`GroupStats` — count, mean and M2 (the sum of squared deviations) per (sample, group), shape (N, G), in
  the accumulation dtype (float32, float64 for float64 inputs); :meth:`GroupStats.merge` combines parts with
  Chan's parallel formula, exact for any split and deterministic (a fixed left-to-right order);
* :func:`group_stats` — the statistics of one part (differentiable: gradients flow back to the part);
* ``groupnorm.group_norm(part, G, ..., stats=merged)`` — normalize a part with given statistics (epilogue
  included);
* :func:`group_norm_backward_sums` and :func:`group_norm_part_backward` — the explicit backward of a split
  normalization, for code that runs the parts where autograd cannot see them all (other devices, one tile at a
  time): each part gives two per-group sums, the sums of all parts are added, and each part finishes its own
  input gradient from them.

What runs: plain torch ops in the accumulation dtype (not the fused kernels), so everything here is
differentiable and works on every device. Backward formula (that of the op): with ``g = dy * act'(z) *
(1 + scale) * weight`` the gradient reaching x_hat, ``dx = rstd * (g - sum(g) / n - x_hat * sum(g * x_hat) / n)``
over each group of n elements of the whole input; the two sums are what the parts exchange.

Example: two halves of an image, normalized with the statistics of the whole::

    >>> import torch, groupnorm
    >>> x = torch.randn(2, 8, 6, 10, requires_grad=True)
    >>> top, bottom = x[:, :, :4], x[:, :, 4:]
    >>> merged = groupnorm.group_stats(top, 4).merge(groupnorm.group_stats(bottom, 4))
    >>> y = torch.cat([groupnorm.group_norm(part, 4, stats=merged) for part in (top, bottom)], dim=2)
    >>> torch.allclose(y, groupnorm.group_norm(x, 4), atol=1e-5)
    True
    >>> y.square().sum().backward()  # gradients flow through the merged statistics into both halves
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from groupnorm.activations import activation_derivative, apply_activation, canonical_activation
from groupnorm.ops.checks import accumulation_dtype, check_forward_args, check_input, resolve_num_groups

# the op's own plain-torch pieces, so that a split normalization computes exactly the op's arithmetic
from groupnorm.ops.torch_impl import _affine, _channel_view, _group_view, _pre_activation, normalized

__all__ = [
    "BackwardSums",
    "GroupStats",
    "PartGradients",
    "check_stats",
    "group_norm_backward_sums",
    "group_norm_part_backward",
    "group_stats",
    "normalize_with_stats",
]


@dataclass(frozen=True)
class GroupStats:
    """Per-(sample, group) element count, mean and M2 (sum of squared deviations from the mean), each (N, G).

    All three share one dtype (the accumulation dtype of the input they came from) and device. The variance is
    ``m2 / count`` (biased, as Group Normalization uses). Build them with :func:`group_stats`; combine parts with
    :meth:`merge`.

    Example::

        >>> import torch, groupnorm
        >>> x = torch.randn(1, 4, 3, 5)
        >>> left, right = groupnorm.group_stats(x[..., :2], 2), groupnorm.group_stats(x[..., 2:], 2)
        >>> whole = left.merge(right)
        >>> whole.count
        tensor([[30., 30.]])
        >>> torch.allclose(whole.var, x.reshape(1, 2, -1).var(dim=-1, correction=0))
        True
    """

    count: Tensor
    mean: Tensor
    m2: Tensor

    def __post_init__(self) -> None:
        for name in ("count", "mean", "m2"):
            value = getattr(self, name)
            if not isinstance(value, Tensor):
                raise TypeError(
                    f"GroupStats.{name} must be a Tensor, got {name} of type {type(value).__name__}"
                )
            if value.dim() != 2:
                raise ValueError(
                    f"GroupStats.{name} must have shape (N, G), got {name}.shape={tuple(value.shape)}"
                )
        for name in ("count", "m2"):
            value = getattr(self, name)
            if value.shape != self.mean.shape:
                raise ValueError(
                    f"GroupStats.{name} must have mean's shape {tuple(self.mean.shape)}, "
                    f"got {name}.shape={tuple(value.shape)}"
                )
            if value.dtype != self.mean.dtype or value.device != self.mean.device:
                raise TypeError(
                    f"GroupStats.{name} must have mean's dtype {self.mean.dtype} and device {self.mean.device}, "
                    f"got {name}.dtype={value.dtype}, {name}.device={value.device}"
                )
        if not self.mean.dtype.is_floating_point:
            raise TypeError(f"GroupStats must be floating point, got mean.dtype={self.mean.dtype}")

    @property
    def shape(self) -> torch.Size:
        """(N, G)."""
        return self.mean.shape

    @property
    def num_groups(self) -> int:
        """G, the number of groups the statistics were taken over."""
        return self.mean.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.mean.dtype

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @property
    def var(self) -> Tensor:
        """Biased variance ``m2 / count`` (0 for a group without elements)."""
        return self.m2 / self.count.clamp_min(1)

    def rstd(self, eps: float = 1e-5) -> Tensor:
        """``1 / sqrt(var + eps)``, what the normalization multiplies by."""
        return torch.rsqrt(self.var + eps)

    def merge(self, *others: GroupStats) -> GroupStats:
        """The statistics of all parts together: ``self`` then ``others``, merged left to right.

        Chan et al.'s pairwise update (``delta = mean_b - mean_a``, ``m2 = m2_a + m2_b + delta² n_a n_b / n``) is
        exact for any split and does not cancel when |mean| >> std; the fixed order makes the result the same bits
        every time. Also callable on the class: ``GroupStats.merge(*parts)``. Differentiable.
        """
        merged = self
        for i, other in enumerate(others):
            if not isinstance(other, GroupStats):
                raise TypeError(f"merge takes GroupStats, got others[{i}] of type {type(other).__name__}")
            if other.shape != merged.shape:
                raise ValueError(
                    f"merge needs statistics of one shape (N, G)={tuple(merged.shape)}, "
                    f"got others[{i}].shape={tuple(other.shape)}"
                )
            if other.dtype != merged.dtype or other.device != merged.device:
                raise TypeError(
                    f"merge needs statistics of one dtype and device ({merged.dtype}, {merged.device}), "
                    f"got others[{i}] in {other.dtype} on {other.device}"
                )
            merged = _chan_merge(merged, other)
        return merged

    def detach(self) -> GroupStats:
        """The same statistics without autograd history."""
        return GroupStats(self.count.detach(), self.mean.detach(), self.m2.detach())


def _chan_merge(a: GroupStats, b: GroupStats) -> GroupStats:
    count = a.count + b.count
    # an empty part (count 0) contributes nothing; clamping keeps 0 / 0 out of the result
    share_b = b.count / count.clamp_min(1)
    delta = b.mean - a.mean
    mean = a.mean + delta * share_b
    m2 = a.m2 + b.m2 + delta * delta * a.count * share_b
    return GroupStats(count, mean, m2)


def group_stats(x: Tensor, num_groups: int | None = None, *, group_size: int | None = None) -> GroupStats:
    """The :class:`GroupStats` of ``x`` (N, C, *spatial): per sample, per group of C/G channels and all positions.

    Any rank >= 2, contiguous or channels_last; computed with ``torch.var_mean`` in the accumulation dtype (float32,
    float64 for float64 inputs), differentiable with respect to ``x``. Pass exactly one of ``num_groups`` and
    ``group_size`` (channels per group). A part without positions has count 0 and changes nothing when merged.

    Example::

        >>> import torch, groupnorm
        >>> stats = groupnorm.group_stats(torch.randn(2, 8, 4, 4), group_size=2)
        >>> stats.shape, stats.dtype
        (torch.Size([2, 4]), torch.float32)
    """
    check_input(x)
    if not x.dtype.is_floating_point:
        raise TypeError(f"input must be a floating-point tensor, got input.dtype={x.dtype}")
    groups = resolve_num_groups(x.shape[1], num_groups, group_size)
    acc = accumulation_dtype(x.dtype)
    n = x.shape[0]
    per_group = x[0].numel() // groups if n else 0
    if per_group == 0:
        zeros = torch.zeros((n, groups), dtype=acc, device=x.device)
        return GroupStats(zeros, zeros.clone(), zeros.clone())
    grouped = _group_view(x, groups).to(acc)
    var, mean = torch.var_mean(grouped, dim=tuple(range(2, grouped.dim())), correction=0)
    count = torch.full_like(mean, float(per_group))
    return GroupStats(count, mean, var * per_group)


def check_stats(stats: object, x: Tensor, num_groups: int) -> GroupStats:
    """Raise a clear error unless ``stats`` are :class:`GroupStats` that can normalize ``x`` in ``num_groups``."""
    if not isinstance(stats, GroupStats):
        raise TypeError(
            f"stats must be a groupnorm.GroupStats or None, got stats of type {type(stats).__name__}"
        )
    n = x.shape[0]
    if stats.shape[0] == n and stats.num_groups != num_groups:
        raise ValueError(
            f"stats have {stats.num_groups} groups (stats.shape={tuple(stats.shape)}), got num_groups={num_groups}"
        )
    if tuple(stats.shape) != (n, num_groups):
        raise ValueError(
            f"stats must have shape (N, G)={(n, num_groups)} for an input of shape {tuple(x.shape)}, "
            f"got stats.shape={tuple(stats.shape)}"
        )
    acc = accumulation_dtype(x.dtype)
    if stats.dtype != acc:
        raise TypeError(
            f"stats must be in the accumulation dtype {acc} of input dtype {x.dtype}, got stats.dtype={stats.dtype}"
        )
    if stats.device != x.device:
        raise ValueError(f"stats must be on the input's device {x.device}, got stats.device={stats.device}")
    return stats


def epilogue_output(
    x: Tensor,
    mean: Tensor,
    rstd: Tensor,
    num_groups: int,
    weight: Tensor | None,
    bias: Tensor | None,
    activation: str,
    residual: Tensor | None,
    scale: Tensor | None,
    shift: Tensor | None,
) -> Tensor:
    """``act((x_hat * weight + bias) * (1 + scale) + shift + residual)`` in x's dtype and memory format."""
    xhat = normalized(x, mean, rstd, num_groups)
    z = _pre_activation(_affine(xhat, weight, bias), residual, scale, shift)
    y = torch.empty_like(x)
    y.copy_(apply_activation(z, activation))  # copy_ is differentiable: autograd sees through it
    return y


def normalize_with_stats(
    x: Tensor,
    stats: GroupStats,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
    activation: str | None = None,
    residual: Tensor | None = None,
    scale: Tensor | None = None,
    shift: Tensor | None = None,
) -> Tensor:
    """What ``groupnorm.group_norm(x, ..., stats=stats)`` runs: the op's epilogue with x_hat from given statistics.

    Plain torch ops recorded by autograd: gradients reach ``x`` directly and, through ``stats``, whatever the
    statistics were computed from (so a part normalized with merged statistics gets the whole input's gradient).
    """
    activation = canonical_activation(activation)
    if not isinstance(stats, GroupStats):
        raise TypeError(f"stats must be a groupnorm.GroupStats, got stats of type {type(stats).__name__}")
    num_groups = stats.num_groups
    check_forward_args(x, weight, bias, num_groups, eps, activation, residual, scale, shift)
    check_stats(stats, x, num_groups)
    return epilogue_output(
        x, stats.mean, stats.rstd(eps), num_groups, weight, bias, activation, residual, scale, shift
    )


class BackwardSums(NamedTuple):
    """A part's share of the two per-group sums a split normalization's backward needs, each (N, G).

    ``sum_dy_gamma`` is the sum over the part's elements of each group of the gradient reaching x_hat (``dy *
    weight`` without an epilogue; ``dy * act'(z) * (1 + scale) * weight`` with one), ``sum_dy_gamma_xhat`` the
    sum of that gradient times x_hat. The sums of all parts are added (:meth:`merge`) before
    :func:`group_norm_part_backward` uses them.
    """

    sum_dy_gamma: Tensor
    sum_dy_gamma_xhat: Tensor

    def merge(self, *others: BackwardSums) -> BackwardSums:
        """Elementwise sums with ``others``, added left to right (deterministic)."""
        first, second = self.sum_dy_gamma, self.sum_dy_gamma_xhat
        for other in others:
            first, second = first + other.sum_dy_gamma, second + other.sum_dy_gamma_xhat
        return BackwardSums(first, second)


class PartGradients(NamedTuple):
    """One part's gradients: ``input`` is final; the others are the part's contributions (add them over parts)."""

    input: Tensor | None
    weight: Tensor | None
    bias: Tensor | None
    residual: Tensor | None
    scale: Tensor | None
    shift: Tensor | None


def _sum_except_channels(t: Tensor) -> Tensor:
    return t.sum(dim=(0, *range(2, t.dim())))


def _sum_spatial(t: Tensor) -> Tensor:
    return t.sum(dim=tuple(range(2, t.dim()))) if t.dim() > 2 else t


def epilogue_backward(
    grad_y: Tensor,
    x: Tensor,
    mean: Tensor,
    rstd: Tensor,
    num_groups: int,
    weight: Tensor | None,
    bias: Tensor | None,
    activation: str,
    residual: Tensor | None,
    scale: Tensor | None,
    shift: Tensor | None,
) -> tuple[Tensor, Tensor, PartGradients]:
    """The local part of the backward: ``(grad_xhat, xhat, grads)``, the first two grouped (N, G, C/G, *spatial)
    in the accumulation dtype, ``grads`` with ``input=None`` and the other gradients of the inputs given.

    The arithmetic is that of the op's backward (:func:`groupnorm.ops.torch_impl.backward_differentiable`).
    """
    acc, rank = mean.dtype, x.dim()
    xhat = normalized(x, mean, rstd, num_groups)
    affine_out = _affine(xhat, weight, bias)
    grad_pre = grad_y.to(acc)
    if activation != "none":
        grad_pre = grad_pre * activation_derivative(
            _pre_activation(affine_out, residual, scale, shift), activation
        )
    grad_affine = grad_pre if scale is None else grad_pre * (1.0 + _channel_view(scale, rank, acc))
    grad_xhat = grad_affine if weight is None else grad_affine * _channel_view(weight, rank, acc)
    grads = PartGradients(
        input=None,
        weight=None if weight is None else _sum_except_channels(grad_affine * xhat).to(weight.dtype),
        bias=None if bias is None else _sum_except_channels(grad_affine).to(bias.dtype),
        residual=None if residual is None else grad_pre.to(residual.dtype),
        scale=None if scale is None else _sum_spatial(grad_pre * affine_out).to(scale.dtype),
        shift=None if shift is None else _sum_spatial(grad_pre).to(shift.dtype),
    )
    return _group_view(grad_xhat, num_groups), _group_view(xhat, num_groups), grads


def local_sums(grad_xhat: Tensor, xhat: Tensor) -> BackwardSums:
    """:class:`BackwardSums` of grouped ``grad_xhat`` and ``xhat`` (from :func:`epilogue_backward`)."""
    dims = tuple(range(2, grad_xhat.dim()))
    return BackwardSums(grad_xhat.sum(dim=dims), (grad_xhat * xhat).sum(dim=dims))


def input_gradient(
    grad_xhat: Tensor, xhat: Tensor, rstd: Tensor, count: Tensor, sums: BackwardSums, like: Tensor
) -> Tensor:
    """``dx = rstd * (g - sum(g) / n - x_hat * sum(g * x_hat) / n)`` with the whole input's sums and count n,
    in ``like``'s dtype and memory format."""
    extra = (1,) * (grad_xhat.dim() - 2)
    n = count.clamp_min(1).reshape(count.shape + extra)
    mean_g = sums.sum_dy_gamma.reshape(n.shape) / n
    mean_gx = sums.sum_dy_gamma_xhat.reshape(n.shape) / n
    dx = rstd.reshape(n.shape) * (grad_xhat - mean_g - xhat * mean_gx)
    out = torch.empty_like(like)
    out.copy_(dx.flatten(1, 2))
    return out


def _checked_part(
    grad_output, input, stats, weight, bias, eps, activation, residual, scale, shift
) -> tuple[str, int]:
    activation = canonical_activation(activation)
    if not isinstance(stats, GroupStats):
        raise TypeError(f"stats must be a groupnorm.GroupStats, got stats of type {type(stats).__name__}")
    num_groups = stats.num_groups
    check_forward_args(input, weight, bias, num_groups, eps, activation, residual, scale, shift)
    check_stats(stats, input, num_groups)
    if not isinstance(grad_output, Tensor) or grad_output.shape != input.shape:
        shape = getattr(grad_output, "shape", type(grad_output).__name__)
        raise ValueError(
            f"grad_output must be a Tensor of the input's shape {tuple(input.shape)}, got grad_output.shape={shape}"
        )
    return activation, num_groups


def group_norm_backward_sums(
    grad_output: Tensor,
    input: Tensor,
    stats: GroupStats,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
    *,
    activation: str | None = None,
    residual: Tensor | None = None,
    scale: Tensor | None = None,
    shift: Tensor | None = None,
) -> BackwardSums:
    """One part's :class:`BackwardSums` for the output gradient ``grad_output`` of
    ``group_norm(input, ..., stats=stats)``; ``stats`` are the merged statistics of all parts.

    Add the parts' sums (``BackwardSums.merge``, or an all-reduce across devices) and pass them to
    :func:`group_norm_part_backward`. The arguments after ``stats`` are those of the forward call.

    Example: the explicit backward of two halves equals autograd's on the whole::

        >>> import torch, groupnorm
        >>> x, w = torch.randn(1, 8, 6, 6), torch.rand(8)
        >>> dy = torch.randn_like(x)
        >>> parts, grads = x.split(3, dim=2), dy.split(3, dim=2)
        >>> stats = groupnorm.GroupStats.merge(*(groupnorm.group_stats(p, 4) for p in parts))
        >>> sums = groupnorm.BackwardSums.merge(
        ...     *(groupnorm.group_norm_backward_sums(g, p, stats, w) for g, p in zip(grads, parts)))
        >>> dx = torch.cat([groupnorm.group_norm_part_backward(g, p, stats, sums, w).input
        ...                 for g, p in zip(grads, parts)], dim=2)
        >>> xr = x.clone().requires_grad_()
        >>> groupnorm.group_norm(xr, 4, w).backward(dy)
        >>> torch.allclose(dx, xr.grad, atol=1e-5)
        True
    """
    activation, num_groups = _checked_part(
        grad_output, input, stats, weight, bias, eps, activation, residual, scale, shift
    )
    grad_xhat, xhat, _ = epilogue_backward(
        grad_output,
        input,
        stats.mean,
        stats.rstd(eps),
        num_groups,
        weight,
        bias,
        activation,
        residual,
        scale,
        shift,
    )
    return local_sums(grad_xhat, xhat)


def group_norm_part_backward(
    grad_output: Tensor,
    input: Tensor,
    stats: GroupStats,
    sums: BackwardSums,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
    *,
    activation: str | None = None,
    residual: Tensor | None = None,
    scale: Tensor | None = None,
    shift: Tensor | None = None,
) -> PartGradients:
    """A part's gradients from the merged statistics ``stats`` and the merged ``sums`` of all parts.

    ``input`` of the result is the part's final input gradient; ``weight``, ``bias``, ``scale``, ``shift`` (and
    ``residual``, which is per element) are this part's contributions, to be added over the parts. See
    :func:`group_norm_backward_sums` for an example.
    """
    activation, num_groups = _checked_part(
        grad_output, input, stats, weight, bias, eps, activation, residual, scale, shift
    )
    if not isinstance(sums, BackwardSums):
        raise TypeError(f"sums must be groupnorm.BackwardSums, got sums of type {type(sums).__name__}")
    for name, value in zip(sums._fields, sums):
        if tuple(value.shape) != tuple(stats.shape):
            raise ValueError(
                f"sums.{name} must have the statistics' shape {tuple(stats.shape)}, got shape {tuple(value.shape)}"
            )
    rstd = stats.rstd(eps)
    grad_xhat, xhat, grads = epilogue_backward(
        grad_output, input, stats.mean, rstd, num_groups, weight, bias, activation, residual, scale, shift
    )
    return grads._replace(input=input_gradient(grad_xhat, xhat, rstd, stats.count, sums, input))
