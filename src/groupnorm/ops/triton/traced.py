"""The launchers as ``torch.compile`` traces them: the same code, every kernel launch wrapped with
``torch.library.wrap_triton``.

Under torch.compile the op decomposes into these (:mod:`groupnorm.ops.decomposition`), so the graph holds the
launches themselves (``triton_kernel_wrapper_functional`` nodes, one per kernel launch) and the output allocations
instead of one opaque op; Inductor then calls the kernels from its own generated code. They run
:func:`launch.forward` / :func:`launch.backward` unchanged, with the kernel modules swapped for views whose kernels
are wrapped, so the plan, the grids, the kernels and their arguments are the eager call's: there is one launch
sequence, and a change to it reaches both paths.

Eager calls never come here (they launch the kernels directly, as before). A plan is fixed at trace time from
the shapes, so only calls with static shapes are traced (the decomposition keeps the op whole otherwise).

Example (on a CUDA machine)::

    >>> import torch, groupnorm
    >>> from torch._inductor.utils import run_and_get_code
    >>> x = torch.randn(2, 64, 16, 16, device="cuda")
    >>> y, code = run_and_get_code(torch.compile(lambda t: groupnorm.group_norm(t, 32, activation="silu")), x)
    >>> "fwd_onepass" in "".join(code)   # the kernel's source and launch, in Inductor's output code
    True
"""

from __future__ import annotations

import types

import torch

from groupnorm.ops.triton import backward_kernels, forward_kernels, launch


class _Wrapped:
    """A kernel module seen through ``wrap_triton``: each kernel looked up is wrapped, so that launching it
    under a trace records a graph node instead of running it."""

    __slots__ = ("_module",)

    def __init__(self, module: types.ModuleType) -> None:
        self._module = module

    def __getattr__(self, name: str):
        return torch.library.wrap_triton(getattr(self._module, name))


def forward(*args, **kwargs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`launch.forward` (same arguments) with its kernels wrapped for tracing."""
    return launch.forward(*args, **kwargs, fk=_Wrapped(forward_kernels))


def backward(*args, **kwargs) -> tuple[torch.Tensor, ...]:
    """:func:`launch.backward` (same arguments) with its kernels wrapped for tracing."""
    return launch.backward(*args, **kwargs, bk=_Wrapped(backward_kernels))


def kernels() -> list:
    """The ``@triton.jit`` functions of the kernel modules (torch keys its compile caches on their sources)."""
    from triton.runtime.jit import JITFunction

    return [
        obj
        for module in (forward_kernels, backward_kernels)
        for obj in vars(module).values()
        if isinstance(obj, JITFunction) and obj.__module__ == module.__name__
    ]


def traceable() -> bool:
    """Whether torch.compile can trace the launches here: torch has ``wrap_triton`` and the kernels are compiled
    ones (under ``TRITON_INTERPRET=1`` they are interpreted, which Inductor cannot call)."""
    from triton.runtime.jit import JITFunction

    return hasattr(torch.library, "wrap_triton") and isinstance(forward_kernels.fwd_apply_kernel, JITFunction)
