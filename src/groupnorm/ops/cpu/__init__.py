"""Compiled CPU kernels for ``groupnorm::forward`` / ``groupnorm::backward``.

Importing this module registers the kernels with :mod:`groupnorm.ops.registry` for ``device_type="cpu"``; it
compiles nothing. The first call that the kernels accept loads the library (building it if needed, see
:mod:`groupnorm.ops.cpu.build`); if that fails, a warning says why and the plain-torch implementation serves
every CPU call from then on.

Served: non-empty float32, float16 and bfloat16 inputs of rank 2..5; float64, higher ranks and empty tensors go
to the plain-torch implementation.

Example::

    >>> import torch, groupnorm.ops, groupnorm.ops.cpu
    >>> from groupnorm.ops import registry
    >>> registry.select(torch.randn(8, 64, 32, 32)).name in ("cpu-c", "torch")
    True
"""

from __future__ import annotations

import os

import torch

from groupnorm.ops import registry
from groupnorm.ops.cpu import kernels, loader

NAME = "cpu-c"

# Below this many elements the plain-torch implementation takes the call. Measured with
# `python -m groupnorm.bench.dispatch_threshold` (docs/results/bench-cpu/kernel-choice.md): behind the same op the
# kernels beat the plain-torch implementation from the smallest size up (its many small torch ops cost more than
# one library call), so every non-empty tensor goes to the kernels. GROUPNORM_CPU_MIN_NUMEL overrides it.
DEFAULT_MIN_NUMEL = 1


def min_numel() -> int:
    return int(os.environ.get("GROUPNORM_CPU_MIN_NUMEL", DEFAULT_MIN_NUMEL))


def supports(x: torch.Tensor) -> bool:
    """Whether the compiled kernels take a call on ``x``."""
    return (
        x.device.type == "cpu"
        and x.dtype in kernels.SUPPORTED_DTYPES
        and 2 <= x.dim() <= 5
        and x.numel() >= max(1, min_numel())
        and loader.available()
    )


registry.register_implementation(
    registry.Implementation(
        name=NAME,
        device_type="cpu",
        forward=kernels.forward,
        backward=kernels.backward,
        supports=supports,
        description="C/OpenMP kernels, float32 arithmetic, deterministic for any thread count",
    )
)

__all__ = ["NAME", "supports", "min_numel", "kernels", "loader"]
