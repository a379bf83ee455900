"""Plain eager calls served without the dispatcher round trip of the registered op.

A ``torch.library.custom_op`` call in eager mode passes through several Python layers (autograd wrapper,
redispatch, alias checks) that cost about 20 microseconds, more than the whole of ``torch.nn.functional.group_norm``
on a small tensor and a tenth of the kernel time on a ResNet-50 stage-4 activation. When nothing can be watching
the call (no compile or trace in progress, no tensor subclass, no torch-function or dispatch mode, no functorch
transform, no profiler, no autocast on the input's device), :func:`group_norm` calls the implementation that
:func:`groupnorm.ops.registry.select` picks, exactly as the op would, and records the backward with a
``torch.autograd.Function`` that calls the same backward implementation. The op and this path therefore give the
same bits (``tests/ops/test_eager_path.py`` checks it); everything that needs to see an op in a graph (compile,
export, ONNX, ``make_fx``, vmap, FakeTensor) still goes through ``torch.ops.groupnorm.forward``.

One exception, for speed: a small plain float32 CPU call (no activation, residual or scale/shift, fewer than
:data:`DEFAULT_SMALL_CPU_NUMEL` elements, or :data:`DEFAULT_SMALL_CPU_NUMEL_CHANNELS_LAST` in channels_last) is
handed to ``torch.nn.functional.group_norm``, whose whole call costs less than the Python path to the kernels;
likewise a small call with a ReLU and/or a residual (a ResNet block's end, under
:data:`DEFAULT_SMALL_CPU_NUMEL_RELU` / :data:`DEFAULT_SMALL_CPU_NUMEL_RELU_CHANNELS_LAST`) runs as torch's
``group_norm``, an in-place add and an in-place ReLU.
Such calls have torch's own numerics and determinism, so their bits can differ in the last place from the same
call inside a compiled graph, which always runs the op.

Example::

    >>> import torch
    >>> from groupnorm.ops import eager
    >>> x = torch.randn(2, 8, 4, 4)
    >>> eager.eligible(x, None)
    True
    >>> y = eager.group_norm(x, None, None, 4, 1e-5, "silu", None, None, None)
    >>> torch.equal(y, torch.ops.groupnorm.forward(x, None, None, 4, 1e-5, "silu", None, None, None)[0])
    True
    >>> eager.served_by_torch(x, None, None, 4, "none", None, None, None)
    True
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor

from groupnorm.ops import registry
from groupnorm.ops.checks import check_forward_args
from groupnorm.ops.op import input_gradients

_PLAIN_TYPES = (torch.Tensor, torch.nn.Parameter)


def _private(owner, name: str):
    """A private torch query, or one that always says "observed" where this torch version lacks it."""
    return getattr(owner, name, lambda: True)


# private torch queries, looked up once (a torch without one of them makes every call take the op)
_tracing_state = _private(torch._C, "_get_tracing_state")
_function_mode_enabled = _private(torch._C, "_is_torch_function_mode_enabled")
_dispatch_stack_len = _private(torch._C, "_len_torch_dispatch_stack")
_functorch_active = _private(torch._C, "_are_functorch_transforms_active")
_profiler_enabled = _private(torch._C._autograd, "_profiler_enabled")


def _observed() -> bool:
    """True when a compiler, tracer, mode, transform or profiler may need to see the op itself."""
    return bool(
        torch.compiler.is_compiling()
        or _tracing_state() is not None  # torch.jit.trace (and the TorchScript ONNX exporter)
        or _function_mode_enabled()
        or _dispatch_stack_len()
        or _functorch_active()
        or _profiler_enabled()
    )


def eligible(x: Tensor, *others: Tensor | None) -> bool:
    """Whether a call on these tensors may skip the dispatcher (see the module docstring)."""
    if type(x) not in _PLAIN_TYPES:
        return False
    for t in others:
        if t is not None and type(t) not in _PLAIN_TYPES:
            return False
    if _observed():
        return False
    # the op registers CUDA autocast (inputs cast to float32): under autocast, CUDA calls go through the op;
    # other devices (meta, MPS, ...) always do
    device = x.device.type
    return device == "cpu" or (device == "cuda" and not torch.is_autocast_enabled("cuda"))


def _backward_impl(*args):
    return registry.select(args[1]).backward(*args)


class _GroupNormFunction(torch.autograd.Function):
    """Autograd node of an eager call: saves what the op's autograd saves and calls the same backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, num_groups, eps, activation, residual, scale, shift):
        y, mean, rstd = registry.select(x).forward(
            x, weight, bias, num_groups, eps, activation, residual, scale, shift
        )
        ctx.save_for_backward(x, weight, bias, mean, rstd, residual, scale, shift)
        ctx.num_groups = num_groups
        ctx.eps = eps
        ctx.activation = activation
        return y

    @staticmethod
    def backward(ctx, grad_y):
        needs = ctx.needs_input_grad
        mask = [needs[0], needs[1], needs[2], needs[6], needs[7], needs[8]]
        dx, dweight, dbias, dresidual, dscale, dshift = input_gradients(ctx, grad_y, mask, _backward_impl)
        return dx, dweight, dbias, None, None, None, dresidual, dscale, dshift


# Below these sizes a plain float32 CPU call (no activation, residual or scale/shift) is served by torch's own
# group_norm: its whole call costs 6-10 us in C++, against about 25 us (forward) and 100-150 us (forward+backward,
# through a Python autograd node) for the path to the compiled kernels. In NCHW torch's kernels are good and ours
# overtake it (forward+backward) only from about 2^20 elements; in channels_last torch's are slow enough that ours
# win from about 2^13 on. Measured with `python -m groupnorm.bench.small_calls`
# (docs/results/bench-cpu/kernel-choice.md). GROUPNORM_CPU_SMALL_NUMEL overrides both (0: always the kernels).
DEFAULT_SMALL_CPU_NUMEL = 1 << 20
DEFAULT_SMALL_CPU_NUMEL_CHANNELS_LAST = 1 << 13
# A ResNet block's end, GN with a ReLU and/or a residual, is one fused call on the kernels and up to three torch
# ops (group_norm, add, relu, each a few us in C++ with its autograd node); below these sizes the three ops cost
# less than the Python path to the fused kernel. Measured with `python -m groupnorm.bench.small_calls` (one thread,
# as in a training worker; docs/results/cifar10-cpu/small-calls.md): forward+backward, the fused kernel is 0.82x
# torch's three ops at 131k elements NCHW and 1.12x at 259k; in channels_last 0.82x at 15k and 1.43x at 62k.
DEFAULT_SMALL_CPU_NUMEL_RELU = 1 << 18
DEFAULT_SMALL_CPU_NUMEL_RELU_CHANNELS_LAST = 1 << 15


def small_cpu_numel(channels_last: bool = False, epilogue: bool = False) -> int:
    """The size below which a float32 CPU call (plain, or with ``epilogue`` a ReLU/residual) goes to torch."""
    override = os.environ.get("GROUPNORM_CPU_SMALL_NUMEL")
    if override is not None:
        return int(override)
    if epilogue:
        return DEFAULT_SMALL_CPU_NUMEL_RELU_CHANNELS_LAST if channels_last else DEFAULT_SMALL_CPU_NUMEL_RELU
    return DEFAULT_SMALL_CPU_NUMEL_CHANNELS_LAST if channels_last else DEFAULT_SMALL_CPU_NUMEL


def served_by_torch(x, weight, bias, num_groups, activation, residual, scale, shift) -> bool:
    """Whether an eligible call goes to ``torch.nn.functional.group_norm`` (small, float32, CPU, no scale/shift,
    an activation of none or ReLU).

    Single-element groups stay with the kernels (torch raises there; the op normalizes them to 0).
    """
    if not (
        x.device.type == "cpu"
        and activation in ("none", "relu")
        and (residual is None or residual.dtype == x.dtype)
        and scale is None
        and shift is None
        and x.dtype == torch.float32
        and (weight is None or weight.dtype == torch.float32)
        and (bias is None or bias.dtype == torch.float32)
        and x.numel() > x.shape[0] * num_groups
    ):
        return False
    epilogue = activation != "none" or residual is not None
    return x.numel() < small_cpu_numel(channels_last=not x.is_contiguous(), epilogue=epilogue)


def group_norm(
    x: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    num_groups: int,
    eps: float,
    activation: str,
    residual: Tensor | None,
    scale: Tensor | None,
    shift: Tensor | None,
) -> Tensor:
    """``y`` of the op's forward for an :func:`eligible` call, with autograd when a tensor requires grad.

    Small float32 CPU calls without scale/shift (see :func:`served_by_torch`) go to torch's own ``group_norm``
    instead, followed by the residual add and the ReLU when the call has them.
    """
    check_forward_args(x, weight, bias, num_groups, eps, activation, residual, scale, shift)
    if served_by_torch(x, weight, bias, num_groups, activation, residual, scale, shift):
        y = F.group_norm(x, num_groups, weight, bias, eps)
        # in place: group_norm's backward does not read its output, relu's reads only its own
        if residual is not None:
            y = y.add_(residual)
        return y.relu_() if activation == "relu" else y
    args = (x, weight, bias, num_groups, eps, activation, residual, scale, shift)
    if torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, weight, bias, residual, scale, shift)
    ):
        return _GroupNormFunction.apply(*args)
    return registry.select(x).forward(*args)[0]
