"""Which implementation of the op serves a tensor.

The registered op (``groupnorm.ops.op``) never names a kernel. It asks this registry, which keeps, per device
type, an ordered list of implementations; the first one whose ``supports`` accepts the call serves it, and the
plain-torch implementation serves everything else (any device: MPS, XPU, ...). Kernel modules plug in with
:func:`register_implementation` without touching anything above them.

Example (a kernel for float64 CPU inputs, here the plain-torch functions under another name)::

    >>> import torch, groupnorm
    >>> from groupnorm.ops import torch_impl
    >>> from groupnorm.ops.registry import Implementation, register_implementation, select, unregister_implementation
    >>> register_implementation(Implementation(
    ...     name="my-cpu-kernel", device_type="cpu",
    ...     forward=torch_impl.forward, backward=torch_impl.backward,
    ...     supports=lambda x: x.dtype == torch.float64,
    ... ))
    >>> select(torch.randn(2, 8, 3, dtype=torch.float64)).name
    'my-cpu-kernel'
    >>> select(torch.randn(2, 8, 3)).name in ("cpu-c", "torch")   # float32: served as before
    True
    >>> unregister_implementation("my-cpu-kernel", "cpu")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

ForwardFn = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
BackwardFn = Callable[..., tuple[torch.Tensor, ...]]


def _always(_x: torch.Tensor) -> bool:
    return True


@dataclass(frozen=True)
class Implementation:
    """One implementation of ``groupnorm::forward`` / ``groupnorm::backward``.

    ``forward`` and ``backward`` take exactly the arguments of the registered ops (see ``groupnorm.ops.op``) and
    return what they return. ``supports(x)`` decides per call (dtype, rank, size thresholds, ...).
    ``traced_forward`` / ``traced_backward``, when set, are the same computation in a form torch.compile can trace
    (torch ops and ``torch.library.wrap_triton`` launches): under compile the op decomposes into them
    (``groupnorm.ops.decomposition``), so the compiled graph holds the kernels; eager calls never use them.
    """

    name: str
    device_type: str
    forward: ForwardFn
    backward: BackwardFn
    supports: Callable[[torch.Tensor], bool] = field(default=_always)
    description: str = ""
    traced_forward: ForwardFn | None = None
    traced_backward: BackwardFn | None = None


_REGISTRY: dict[str, list[Implementation]] = {}
_FALLBACK: list[Implementation] = []


def register_implementation(impl: Implementation, *, first: bool = True) -> None:
    """Add ``impl`` for its device type; ``first=True`` puts it ahead of those already there.

    Registering a second implementation with the same name and device replaces the first.
    """
    entries = [e for e in _REGISTRY.get(impl.device_type, []) if e.name != impl.name]
    entries.insert(0 if first else len(entries), impl)
    _REGISTRY[impl.device_type] = entries


def unregister_implementation(name: str, device_type: str) -> None:
    """Remove the implementation ``name`` for ``device_type`` (no error when absent)."""
    _REGISTRY[device_type] = [e for e in _REGISTRY.get(device_type, []) if e.name != name]


def set_fallback(impl: Implementation) -> None:
    """Set the implementation that serves every call no registered kernel accepts (the plain-torch one)."""
    _FALLBACK[:] = [impl]


def fallback() -> Implementation:
    """The implementation of last resort."""
    if not _FALLBACK:
        raise RuntimeError("groupnorm: no fallback implementation registered (import groupnorm.ops)")
    return _FALLBACK[0]


def implementations(device_type: str | None = None) -> list[Implementation]:
    """Registered kernels, for one device type or all of them, in the order they are tried."""
    if device_type is not None:
        return list(_REGISTRY.get(device_type, []))
    return [impl for entries in _REGISTRY.values() for impl in entries]


def select(x: torch.Tensor) -> Implementation:
    """The implementation that serves a call on ``x``."""
    for impl in _REGISTRY.get(x.device.type, []):
        if impl.supports(x):
            return impl
    return fallback()
