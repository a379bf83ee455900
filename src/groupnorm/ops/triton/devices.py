"""The device a call runs on: what the planner knows of it (SM count, L2 size) and making it current to launch.

Example::

    >>> import torch
    >>> device_spec(torch.empty(1))  # not on a GPU: the interpreter's small stand-in
    DeviceSpec(sm_count=4, l2_bytes=262144)
"""

from __future__ import annotations

import contextlib
import functools

import torch

from groupnorm.ops.triton.planner import DeviceSpec

# What the planner assumes when the tensors are not on a GPU (interpreter runs): small, so that tests of
# ordinary shapes reach the split path and the L2 waves.
INTERPRETER_DEVICE = DeviceSpec(sm_count=4, l2_bytes=256 * 1024)


@functools.cache
def _cuda_device_spec(index: int) -> DeviceSpec:
    props = torch.cuda.get_device_properties(index)
    return DeviceSpec(sm_count=props.multi_processor_count, l2_bytes=int(getattr(props, "L2_cache_size", 0)))


def spec_for(device: torch.device) -> DeviceSpec:
    """The planner's view of ``device``."""
    if device.type == "cuda":
        return _cuda_device_spec(device.index if device.index is not None else torch.cuda.current_device())
    return INTERPRETER_DEVICE


def device_spec(x: torch.Tensor) -> DeviceSpec:
    """The planner's view of the device holding ``x``."""
    return spec_for(x.device)


def cuda_index(device: torch.device) -> int | None:
    """``device``'s GPU index (the current one when it names none), None off CUDA."""
    if device.type != "cuda":
        return None
    return device.index if device.index is not None else torch.cuda.current_device()


def device_context(index: int | None):
    """Make GPU ``index`` current while launching (Triton launches on the current device); a no-op on CPU and when
    it already is."""
    if index is None or torch.cuda.current_device() == index:
        return contextlib.nullcontext()
    return torch.cuda.device(index)
