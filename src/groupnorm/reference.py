"""The ground truth: Group Normalization as the paper writes it, in float64.

Tests and benchmarks compare every implementation against :func:`group_norm_ref`. It is written for clarity, not
speed: reshape to (N, G, -1), two-pass mean and biased variance in float64, normalize, then the epilogue.
"""

from __future__ import annotations

import torch

from groupnorm.activations import apply_activation, canonical_activation


def group_norm_ref(
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
) -> torch.Tensor:
    """Group Normalization with the op's epilogue, computed and returned in float64 (contiguous).

    ``y = act((x_hat * weight + bias) * (1 + scale) + shift + residual)`` with ``x_hat`` normalized over each
    sample's group of ``C / num_groups`` channels and all spatial positions.

    Example::

        >>> x = torch.randn(2, 8, 4, 4)
        >>> y = group_norm_ref(x, 4, activation="silu")
        >>> y.dtype
        torch.float64
    """
    activation = canonical_activation(activation)
    n, c = x.shape[0], x.shape[1]
    if c % num_groups != 0:
        raise ValueError(f"num_channels C={c} must be divisible by num_groups G={num_groups}")
    param_shape = (1, c) + (1,) * (x.dim() - 2)
    per_sample_shape = (n, c) + (1,) * (x.dim() - 2)

    group_numel = (
        x[0].numel() // num_groups if n else 0
    )  # explicit: reshape cannot infer -1 for an empty batch
    grouped = x.double().reshape(n, num_groups, group_numel)
    mean = grouped.mean(dim=-1, keepdim=True)
    centered = grouped - mean
    var = (centered * centered).mean(dim=-1, keepdim=True)
    out = (centered / torch.sqrt(var + eps)).reshape(x.shape)

    if weight is not None:
        out = out * weight.double().reshape(param_shape)
    if bias is not None:
        out = out + bias.double().reshape(param_shape)
    if scale is not None:
        out = out * (1.0 + scale.double().reshape(per_sample_shape))
    if shift is not None:
        out = out + shift.double().reshape(per_sample_shape)
    if residual is not None:
        out = out + residual.double()
    return apply_activation(out, activation)
