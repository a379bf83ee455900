"""Argument checks shared by the registered op, its fake implementation and the functional API.

Every message names the parameter and the value it got, so a bad call is fixed from the message alone.
"""

from __future__ import annotations

import torch

from groupnorm.activations import canonical_activation


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Statistics and arithmetic dtype: float64 for float64 inputs, float32 for everything else."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_divisible(num_channels: int, num_groups: int) -> None:
    """Raise the error every layer of the project gives when G does not divide C."""
    if num_channels % num_groups != 0:
        raise ValueError(f"num_channels C={num_channels} must be divisible by num_groups G={num_groups}")


def resolve_num_groups(num_channels: int, num_groups: int | None, group_size: int | None) -> int:
    """The group count from exactly one of ``num_groups`` / ``group_size`` (channels per group)."""
    if (num_groups is None) == (group_size is None):
        raise ValueError(
            "pass exactly one of num_groups and group_size, "
            f"got num_groups={num_groups!r} and group_size={group_size!r}"
        )
    if group_size is not None:
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size <= 0:
            raise ValueError(f"group_size must be a positive int, got group_size={group_size!r}")
        if num_channels % group_size != 0:
            raise ValueError(
                f"num_channels C={num_channels} must be divisible by group_size={group_size} (channels per group)"
            )
        return num_channels // group_size
    if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups <= 0:
        raise ValueError(f"num_groups must be a positive int, got num_groups={num_groups!r}")
    check_divisible(num_channels, num_groups)
    return num_groups


def _check_param(name: str, t: torch.Tensor | None, x: torch.Tensor, shape: tuple[int, ...]) -> None:
    if t is None:
        return
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a Tensor or None, got {name} of type {type(t).__name__}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {name}.shape={tuple(t.shape)}")
    if t.device != x.device:
        raise ValueError(f"{name} must be on the input's device {x.device}, got {name}.device={t.device}")
    allowed = {x.dtype, accumulation_dtype(x.dtype)}
    if t.dtype not in allowed:
        names = ", ".join(sorted(str(d) for d in allowed))
        raise TypeError(
            f"{name} dtype must be the input's dtype or its accumulation dtype ({names}) "
            f"for input dtype {x.dtype}, got {name}.dtype={t.dtype}"
        )


def check_input(x: torch.Tensor) -> None:
    """Raise unless ``x`` is a tensor of shape (N, C, *spatial)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"input must be a Tensor, got input of type {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(
            f"input must have at least 2 dimensions (N, C, *spatial), got input.dim()={x.dim()} "
            f"with shape {tuple(x.shape)}"
        )


def check_forward_args(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    num_groups: int,
    eps: float,
    activation: str,
    residual: torch.Tensor | None,
    scale: torch.Tensor | None,
    shift: torch.Tensor | None,
) -> None:
    """Raise a clear error for any argument the op cannot take."""
    check_input(x)
    if not x.dtype.is_floating_point:
        raise TypeError(f"input must be a floating-point tensor, got input.dtype={x.dtype}")
    if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups <= 0:
        raise ValueError(f"num_groups must be a positive int, got num_groups={num_groups!r}")
    c = x.shape[1]
    check_divisible(c, num_groups)
    if not eps >= 0:  # also rejects NaN
        raise ValueError(f"eps must be >= 0, got eps={eps!r}")
    canonical_activation(activation)
    _check_param("weight", weight, x, (c,))
    _check_param("bias", bias, x, (c,))
    _check_param("scale", scale, x, (x.shape[0], c))
    _check_param("shift", shift, x, (x.shape[0], c))
    if residual is not None:
        if not isinstance(residual, torch.Tensor):
            raise TypeError(
                f"residual must be a Tensor or None, got residual of type {type(residual).__name__}"
            )
        if residual.shape != x.shape:
            raise ValueError(
                f"residual must have the input's shape {tuple(x.shape)}, got residual.shape={tuple(residual.shape)}"
            )
        if residual.device != x.device:
            raise ValueError(
                f"residual must be on the input's device {x.device}, got residual.device={residual.device}"
            )
        if residual.dtype != x.dtype:
            raise TypeError(
                f"residual must have the input's dtype {x.dtype}, got residual.dtype={residual.dtype}"
            )
