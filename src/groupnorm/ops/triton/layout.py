"""Which tensors the Triton kernels take, and what the plan sees of them: layout checks and layout keys.

A call is described once per *layout key* (shape, strides, dtype of each tensor; see :func:`key`): the launchers
cache their launch descriptions by it, so these checks run once per layout, not once per call.

Example::

    >>> import torch
    >>> supports(torch.empty(2, 8, 3, 3).contiguous(memory_format=torch.channels_last))
    True
    >>> addressed(key(torch.empty(2, 8, 6, 6)[:, :, ::2])).stride  # an odd residual: its contiguous copy
    (144, 18, 6, 1)
"""

from __future__ import annotations

import functools
import math

import torch

from groupnorm.ops.triton.devices import device_spec
from groupnorm.ops.triton.geometry import Groups, TensorLayout, flat_strides, group_shape, is_dense
from groupnorm.ops.triton.launch_plan import work_plan
from groupnorm.ops.triton.planner import DeviceSpec, Plan, Tuning

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# Launch descriptions are kept per distinct call layout: a model calls the op with a handful of layouts, so after
# the first call of each the launcher only allocates outputs and launches (validation and planning happen once).
CACHE_SIZE = 1024


def supports(x: torch.Tensor) -> bool:
    """Whether the Triton kernels take ``x`` (the registry's per-call test; decided once per layout)."""
    return _supports_layout(x.shape, x.stride(), x.dtype)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _supports_layout(shape: torch.Size, stride: tuple[int, ...], dtype: torch.dtype) -> bool:
    if dtype not in SUPPORTED_DTYPES or not 2 <= len(shape) <= 5 or math.prod(shape) == 0:
        return False
    return is_dense(shape, stride) and flat_strides(shape, stride) is not None


def check(x: torch.Tensor, num_groups: int) -> Groups:
    """``x``'s groups, or ValueError naming what the kernels cannot take."""
    if not supports(x):
        raise ValueError(
            "the Triton kernels take dense float32/float16/bfloat16 tensors of rank 2..5 whose spatial dims "
            f"collapse (contiguous, channels_last, channels_last_3d), got input of shape {tuple(x.shape)}, "
            f"stride {x.stride()}, dtype {x.dtype}"
        )
    return group_shape(x.shape, num_groups)


def key(t: torch.Tensor | None) -> tuple | None:
    """What a launch depends on of a tensor, as a hashable key: shape, strides, dtype (None when absent)."""
    return None if t is None else (t.shape, t.stride(), t.dtype)


def needs_copy(layout: tuple | None) -> bool:
    """Whether a tensor of ``layout`` (a :func:`key`) must be copied to contiguous before the kernels can address
    it (a residual or grad_y of an odd layout)."""
    return layout is not None and not _supports_layout(*layout)


def meta_like(layout: tuple) -> torch.Tensor:
    """A storage-less tensor with ``layout``'s shape, strides and dtype, for checking without the data."""
    shape, stride, dtype = layout
    return torch.empty_strided(shape, stride, dtype=dtype, device="meta")


def tensor_layout(t: torch.Tensor) -> TensorLayout:
    """The plan's view of ``t``."""
    return TensorLayout(tuple(t.shape), t.stride(), t.element_size())


def addressed(layout: tuple | None) -> TensorLayout | None:
    """The plan's view of the tensor the kernels address for one of ``layout`` (a contiguous copy for odd ones)."""
    if layout is None:
        return None
    t = meta_like(layout)
    return tensor_layout(t.contiguous() if needs_copy(layout) else t)


def plan_for(
    x: torch.Tensor,
    num_groups: int,
    reread_bytes_per_elem: int,
    device: DeviceSpec | None = None,
    tuning: Tuning | None = None,
) -> Plan:
    """The planner's work split for input ``x`` (see ``planner``); ``device`` defaults to x's own."""
    check(x, num_groups)
    return work_plan(tensor_layout(x), num_groups, reread_bytes_per_elem, device or device_spec(x), tuning)
