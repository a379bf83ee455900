"""Under ``torch.compile`` the op decomposes into the kernel launches of the implementation that serves it, where
that implementation has a traceable form (the Triton kernels on CUDA: ``ops/triton/traced.py``).

This is how ``torch.library.triton_op`` makes its kernels visible, applied to the op the project already has:
a ``triton_op`` is a ``custom_op`` whose function runs as is in eager mode and which, while AOTAutograd
functionalizes a graph (``FunctionalTensorMode``), is traced into instead of recorded whole, with its
``wrap_triton`` launches becoming ``triton_kernel_wrapper_functional`` nodes that Inductor calls from its own
code. The same ``register_torch_dispatch`` rule on ``groupnorm::forward`` / ``groupnorm::backward`` gives that
without a second op name or a second eager path:

- eager calls are untouched: the rule runs only under ``FunctionalTensorMode`` (AOTAutograd), so a CUDA call still
  runs the launcher directly, with nothing added (a ``triton_op``'s eager call would also go through a
  ``set_wrap_triton_enabled`` context);
- only where the serving implementation has a traceable form (``Implementation.traced_forward`` /
  ``traced_backward``) and every tensor has static sizes and strides (the plan and the grids are fixed at trace
  time) is the op traced into; CPU tensors, the plain-torch fallback, symbolic shapes and tensor subclasses keep
  the op whole, as before;
- ``torch.export`` keeps the op whole too (as it does a ``triton_op``: an exported program stays high-level and
  serializable, the ONNX exporter sees one node).

Why not ``torch.library.triton_op`` itself: it defines a new op whose one function is its implementation on every
device and its fake implementation too. This op routes each call to the CPU kernels, the plain-torch fallback or
the Triton kernels, has fake implementations of its own, and is what the public function, the layers, the
autograd formula and the exporters name; a ``triton_op`` beside it would be a second op name for CUDA, with the
routing between the two in every caller. What a ``triton_op`` adds over a ``custom_op`` is exactly the rule
registered here (and its kernels in torch's cache key, registered by ``ops/triton``), so the eager path stays the
current op's, byte for byte, and the compiled path is what a ``triton_op`` would give.

Example::

    >>> import torch, groupnorm.ops
    >>> from groupnorm.ops import decomposition
    >>> x = torch.randn(2, 8, 4, 4)
    >>> decomposition.traced_function(x, (x,), "traced_forward") is None   # CPU: the op stays whole
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch._subclasses.functional_tensor import FunctionalTensor, FunctionalTensorMode

from groupnorm.ops.routing import route


def _traceable_type(t: type) -> bool:
    """Plain tensors, fake ones and functionalization's wrappers; another tensor subclass keeps the op whole."""
    return t in (torch.Tensor, FunctionalTensor) or issubclass(t, FakeTensor)


def _export_keeps_ops_whole() -> bool:
    """True while torch.export traces (it switches off the decomposition of ``triton_op``\\ s, and so of ours)."""
    try:
        from torch.export._trace import custom_triton_ops_decomposition_disabled
    except ImportError:
        return not getattr(torch._functorch.config, "decompose_custom_triton_ops", True)
    return custom_triton_ops_decomposition_disabled()


_SYMBOLIC = (torch.SymInt, torch.SymFloat, torch.SymBool)


def _static(arg) -> bool:
    """Whether an argument of the op is known at trace time (a tensor: its sizes and strides)."""
    if isinstance(arg, torch.Tensor):
        return all(type(d) is int for d in arg.shape) and all(type(s) is int for s in arg.stride())
    return not isinstance(arg, _SYMBOLIC)


def traced_function(x: torch.Tensor, args: Sequence, attribute: str) -> Callable | None:
    """The traceable form (``attribute`` of the implementation serving ``x``) to trace a call with ``args`` into,
    or None to keep the op whole."""
    if not all(_static(a) for a in args):
        return None
    if x.device.type == "cpu":  # the C kernels have no traceable form, and asking would load them
        return None
    return getattr(route(x, inside_op=True).implementation, attribute, None)


def _rule(x_position: int, attribute: str, check: Callable[..., None]):
    def decompose(mode, op, types, args, kwargs):
        fn = None
        if not _export_keeps_ops_whole() and all(_traceable_type(t) for t in types):
            fn = traced_function(args[x_position], args, attribute)
        if fn is None:
            return mode.__torch_dispatch__(op, types, args, kwargs)
        check(*args, **kwargs)
        with mode:
            return fn(*args, **kwargs)

    return decompose


def register(op, *, x_position: int, attribute: str, check: Callable[..., None]) -> None:
    """Let ``op`` (a ``torch.library.custom_op``) decompose under AOTAutograd into ``attribute`` of the
    implementation that serves its input ``x`` (at ``x_position`` in its arguments), where that is set;
    ``check(*args)`` validates the arguments first, as the op's own body does."""
    op.register_torch_dispatch(FunctionalTensorMode, _rule(x_position, attribute, check))
