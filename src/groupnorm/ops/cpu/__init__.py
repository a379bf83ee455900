"""Compiled CPU kernels for ``groupnorm::forward`` / ``groupnorm::backward``.

Importing this module registers the kernels with :mod:`groupnorm.ops.registry` for ``device_type="cpu"``; it
compiles nothing. The first call that the kernels accept loads the library (building it if needed, see
:mod:`groupnorm.ops.cpu.build`); if that fails, a warning says why and the plain-torch implementation serves
every CPU call from then on.

Served: non-empty float32, float16 and bfloat16 inputs of rank 2..5, whatever their size (behind the op the
kernels beat the plain-torch implementation from the smallest size up: docs/results/bench-cpu/kernel-choice.md);
float64, higher ranks and empty tensors go to the plain-torch implementation.

Example::

    >>> import torch, groupnorm.ops, groupnorm.ops.cpu
    >>> from groupnorm.ops import registry
    >>> registry.select(torch.randn(8, 64, 32, 32)).name in ("cpu-c", "torch")
    True
"""

from __future__ import annotations

import torch

from groupnorm.ops import registry
from groupnorm.ops.cpu import kernels, loader

NAME = "cpu-c"


def supports(x: torch.Tensor) -> bool:
    """Whether the compiled kernels take a call on ``x``."""
    return (
        x.device.type == "cpu"
        and x.dtype in kernels.SUPPORTED_DTYPES
        and 2 <= x.dim() <= 5
        and x.numel() > 0
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

__all__ = ["NAME", "supports", "kernels", "loader"]
