"""The epilogue's tensor arguments in the shapes diffusers, timm and apex pass, resolved to the op's contract.

The op (``torch.ops.groupnorm.forward``) takes ``scale`` / ``shift`` of shape (N, C) and a ``residual`` of the
input's shape, so compile and export see one fixed signature. The public entry points (``groupnorm.group_norm``,
the layers) accept more and resolve it here first:

- ``scale`` / ``shift``: (N, C), (N, C, 1, ..., 1) (diffusers' time embedding after ``[:, :, None, None]``),
  (1, C) or (C,) (one modulation for the whole batch);
- ``residual``: any tensor that broadcasts to the input's shape (e.g. (N, C, 1, 1) or (C, 1, 1)).

Broadcasting is an ``expand`` that autograd records, so gradients reach the tensor the caller passed, summed over
the broadcast dimensions as torch's own broadcasting would.

Example::

    >>> import torch
    >>> x = torch.randn(2, 8, 4, 4)
    >>> modulation("scale", torch.randn(2, 8, 1, 1), x).shape, modulation("shift", torch.randn(8), x).shape
    (torch.Size([2, 8]), torch.Size([2, 8]))
    >>> residual_like(torch.randn(8, 1, 1), x).shape
    torch.Size([2, 8, 4, 4])
"""

from __future__ import annotations

import torch


def modulation(name: str, value: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """``value`` (``scale`` or ``shift``, as ``name`` says) as the op's (N, C) tensor; None stays None."""
    if value is None:
        return None
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a Tensor or None, got {name} of type {type(value).__name__}")
    n, c = x.shape[:2]
    shape = tuple(value.shape)
    trailing_ones = all(d == 1 for d in shape[2:])
    if len(shape) == 1 and shape[0] == c:
        return value.expand(n, c).contiguous()  # the kernels read (N, C) rows
    # (N, C) or (N, C, 1, ..., 1) with the input's rank (what broadcasts per sample and channel), N or 1
    if len(shape) in (2, x.dim()) and shape[1] == c and shape[0] in (n, 1) and trailing_ones:
        return value.reshape(shape[0], c).expand(n, c).contiguous()
    ones = ", 1" * (x.dim() - 2)
    accepted = f"({n}, {c}), ({n}, {c}{ones}), (1, {c}) or ({c},)"
    raise ValueError(
        f"{name} must have shape {accepted} for an input of shape {tuple(x.shape)}, got {name}.shape={shape}"
    )


def residual_like(residual: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """``residual`` broadcast to ``x``'s shape and laid out in its memory format (the kernels read both with one
    set of strides); a residual that already matches is returned as it is."""
    if residual is None or not isinstance(residual, torch.Tensor) or residual.shape == x.shape:
        return residual  # the op's own checks name any other type, device or dtype
    try:
        target = torch.broadcast_shapes(residual.shape, x.shape)
    except RuntimeError:
        target = None
    if target != x.shape:
        raise ValueError(
            f"residual must broadcast to the input's shape {tuple(x.shape)}, got residual.shape={tuple(residual.shape)}"
        )
    expanded = residual.expand(x.shape)
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return expanded.contiguous(memory_format=torch.channels_last)
    if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous():
        return expanded.contiguous(memory_format=torch.channels_last_3d)
    return expanded.contiguous()
