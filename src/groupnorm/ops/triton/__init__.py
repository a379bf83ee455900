"""Triton kernels for the op on CUDA tensors.

Importing this package never needs Triton or a GPU: it registers the kernels with
:mod:`groupnorm.ops.registry` only when both are present, so ``torch.ops.groupnorm.forward/backward`` serve CUDA
tensors with them and everything else stays on the other implementations.

Layers, bottom-up: ``epilogue`` (device functions) -> ``forward_kernels`` / ``backward_kernels``; ``planner``
(work split) -> ``launch_plan`` (which kernels launch, with what grids; both pure Python, over ``geometry``) ->
``forward_launcher`` / ``backward_launcher`` (run a plan on the call's tensors) -> ``launch`` (the op's
signatures) -> ``traced`` (the same, as torch.compile traces it) -> this registration.

What ``torch.compile`` sees: the project's op stays one ``torch.library.custom_op`` (one name, eager calls
launch the kernels directly), and where it serves a CUDA call with static shapes it decomposes under compile into
its kernel launches (``traced``: the same launchers with each kernel wrapped by ``torch.library.wrap_triton``),
which is what ``torch.library.triton_op`` does for its own ops; :mod:`groupnorm.ops.decomposition` says why that
and not a ``triton_op``. Inductor then calls our kernels from its generated code (each launch a
``triton_kernel_wrapper_functional`` node in the graph). The kernels are also registered as the op's Triton
kernels, so torch's compile caches are keyed on their sources; the launchers' Python (the planner) is not in that
key, so a changed planner needs a cleared cache (``TORCHINDUCTOR_CACHE_DIR``) to be traced again.

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
        impl = implementation()
    except Exception as exc:  # a broken or incompatible Triton must not break `import groupnorm`
        warnings.warn(
            f"groupnorm: Triton kernels not registered, CUDA tensors use the plain-torch path ({exc!r})",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    register_implementation(impl)
    return True


def implementation() -> Implementation:
    """The registry entry of the kernels (what :func:`register` registers; needs Triton, not a GPU)."""
    from groupnorm.ops.triton import launch

    traced_forward, traced_backward = _traced_launchers()
    return Implementation(
        name=IMPLEMENTATION_NAME,
        device_type="cuda",
        forward=launch.forward,
        backward=launch.backward,
        supports=launch.supports,
        description="Triton: one-pass or split reduction with L2 waves, fused epilogue, fp32 statistics",
        traced_forward=traced_forward,
        traced_backward=traced_backward,
    )


def _traced_launchers():
    """The launchers torch.compile traces into, or (None, None) where it cannot (then the op stays opaque)."""
    from groupnorm.ops.triton import traced

    if not traced.traceable():
        return None, None
    # torch keys its compile caches (AOTAutograd's) on the sources of an op's registered Triton kernels.
    kernel_table = getattr(getattr(torch._library, "triton", None), "triton_ops_to_kernels", None)
    if kernel_table is not None:
        for name in ("groupnorm::forward", "groupnorm::backward"):
            kernel_table[name] = traced.kernels()
    return traced.forward, traced.backward


register()
