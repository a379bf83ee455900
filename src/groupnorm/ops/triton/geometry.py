"""How the kernels see a tensor: (N, C, S) with its own strides, split into groups. Pure Python (no torch, no
Triton), so the launch plan built on it is testable anywhere.

A tensor of shape (N, C, *spatial) is addressed as (N, C, S) when its spatial dims collapse to one (contiguous,
channels_last, channels_last_3d and any layout whose spatial dims are nested in order); the kernels then take
three strides per tensor.

Example::

    >>> x = TensorLayout.channels_last((2, 64, 8, 8), element_size=2)
    >>> flat_strides(x.shape, x.stride), group_shape(x.shape, 32)
    ((4096, 1, 64), Groups(batch=2, channels=64, spatial=64, num_groups=32, per_group=2))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

INT32_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class TensorLayout:
    """What the plan needs of a tensor: its shape, its strides (in elements) and its element size in bytes."""

    shape: tuple[int, ...]
    stride: tuple[int, ...]
    element_size: int

    @classmethod
    def contiguous(cls, shape: tuple[int, ...], element_size: int) -> TensorLayout:
        """The row-major layout of ``shape`` (torch's contiguous strides)."""
        return cls(tuple(shape), _row_major(shape), element_size)

    @classmethod
    def channels_last(cls, shape: tuple[int, ...], element_size: int) -> TensorLayout:
        """(N, C, *spatial) stored as (N, *spatial, C): channels_last / channels_last_3d."""
        n, c, *spatial = shape
        stored = _row_major((n, *spatial, c))
        return cls(tuple(shape), (stored[0], stored[-1], *stored[1:-1]), element_size)


def _row_major(shape) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


class Groups(NamedTuple):
    """The op's view of an input: ``batch`` samples of ``num_groups`` groups of ``per_group`` channels, each over
    ``spatial`` positions."""

    batch: int
    channels: int
    spatial: int
    num_groups: int
    per_group: int


def group_shape(shape: tuple[int, ...], num_groups: int) -> Groups:
    """``shape`` (N, C, *spatial) split into ``num_groups`` groups; ValueError when C is not divisible."""
    n, c = shape[0], shape[1]
    if num_groups <= 0 or c % num_groups != 0:
        raise ValueError(f"num_channels C={c} must be divisible by num_groups G={num_groups}")
    return Groups(n, c, math.prod(shape[2:]), num_groups, c // num_groups)


def flat_strides(shape: tuple[int, ...], stride: tuple[int, ...]) -> tuple[int, int, int] | None:
    """Strides (N, C, S) of a tensor of ``shape`` (N, C, *spatial), or None when its spatial dims do not collapse
    to one."""
    dims = [(size, st) for size, st in zip(shape[2:], stride[2:], strict=True) if size != 1]
    for (_, outer), (size, inner) in zip(dims, dims[1:], strict=False):
        if outer != inner * size:
            return None
    return stride[0], stride[1], dims[-1][1] if dims else 1


def is_dense(shape: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    """True when the tensor covers its storage span without gaps or overlaps (then ``empty_like`` copies its
    strides)."""
    expected = 1
    for st, size in sorted((st, s) for s, st in zip(shape, stride, strict=True) if s != 1):
        if st != expected:
            return False
        expected *= size
    return True


def is_run(strides: tuple[int, int, int] | None, spatial: int) -> bool:
    """Whether (N, C, S) ``strides`` lay each sample's channels out as one run of C * S elements (NCHW)."""
    return strides is not None and strides[2] == 1 and strides[1] == spatial


def max_offset(t: TensorLayout | None) -> int:
    """One past the largest element offset of ``t`` (0 for None or an empty tensor)."""
    if t is None or math.prod(t.shape) == 0:
        return 0
    return sum((size - 1) * abs(st) for size, st in zip(t.shape, t.stride, strict=True)) + 1


def needs_int64(force: bool, *tensors: TensorLayout | None) -> bool:
    """Whether offsets into any of ``tensors`` can pass 32 bits (or ``force``: the tests' switch)."""
    return force or max(max_offset(t) for t in tensors) > INT32_LIMIT
