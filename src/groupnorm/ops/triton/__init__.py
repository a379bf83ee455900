"""Triton kernels for the op on CUDA tensors.

Importing this package never needs Triton or a GPU: it registers the kernels with
:mod:`groupnorm.ops.registry` only when both are present, so ``torch.ops.groupnorm.forward/backward`` serve CUDA
tensors with them and everything else stays on the other implementations.

Layers, bottom-up: ``epilogue`` (device functions) -> ``forward_kernels`` / ``backward_kernels`` -> ``planner``
(work split; pure Python) -> ``launch`` (the op's signatures) -> this registration.

Why ``custom_op`` (the project's registered op) and not ``torch.library.triton_op`` + ``wrap_triton``: a
``custom_op`` is opaque to ``torch.compile``, so the Triton launcher inside it runs as is, with no graph break
under ``fullgraph=True``, and the fake implementation gives the compiler the output shapes and strides. A
``triton_op`` would let Inductor trace into the launcher and schedule the kernels itself, but its body must be
traceable torch ops plus wrapped kernels only -- our op picks its implementation per device at run time (CPU
kernels, plain-torch fallback) and the launcher plans from Python-side device properties, which that tracing
would freeze or reject. Inductor cannot fuse into a hand-written reduction kernel anyway, so the gain would be
launch overhead only. That gain is not measured yet (it needs a GPU): ``scripts/gpu_check.sh`` times the op
eager and as CUDA-graph replays beside ``torch.compile`` of the eager code, which bounds what a ``triton_op``
could save; the launchers' per-call host cost with the kernels stubbed is ``scripts/host_overhead.py``'s.

Example::

    >>> import groupnorm.ops.triton as gt
    >>> gt.register()  # True on a CUDA machine with Triton, False elsewhere (and nothing registered)
"""

from __future__ import annotations

import importlib.util
import warnings

import torch

from groupnorm.ops.registry import Implementation, register_implementation

IMPLEMENTATION_NAME = "triton"


def triton_importable() -> bool:
    """Whether the ``triton`` package is installed (without importing it)."""
    return importlib.util.find_spec("triton") is not None


def available() -> bool:
    """Whether the kernels can serve CUDA tensors here: a CUDA device and Triton."""
    return torch.cuda.is_available() and triton_importable()


def register() -> bool:
    """Register the kernels for CUDA tensors when :func:`available`; returns whether it did."""
    if not available():
        return False
    try:
        from groupnorm.ops.triton import launch
    except Exception as exc:  # a broken or incompatible Triton must not break `import groupnorm`
        warnings.warn(
            f"groupnorm: Triton kernels not registered, CUDA tensors use the plain-torch path ({exc!r})",
            RuntimeWarning,
            stacklevel=2,
        )
        return False

    register_implementation(
        Implementation(
            name=IMPLEMENTATION_NAME,
            device_type="cuda",
            forward=launch.forward,
            backward=launch.backward,
            supports=launch.supports,
            description="Triton: one-pass or split reduction with L2 waves, fused epilogue, fp32 statistics",
        )
    )
    return True


register()
