"""Plain eager calls run without the dispatcher round trip of the registered op.

A ``torch.library.custom_op`` call in eager mode passes through several Python layers (autograd wrapper,
redispatch, alias checks) that cost about 20 microseconds, more than the whole of ``torch.nn.functional.group_norm``
on a small tensor and a tenth of the kernel time on a ResNet-50 stage-4 activation. When nothing can be watching
the call, :func:`groupnorm.ops.routing.route` says so, and :func:`run` carries out its choice: the implementation
the op would pick, called directly, with the backward recorded by a ``torch.autograd.Function`` that saves what the
op's autograd saves and calls the same implementation's backward (:mod:`groupnorm.ops.autograd`). The op and this
path therefore give the same bits (``tests/ops/test_eager_path.py`` checks it); everything that needs to see an op
in a graph (compile, export, ONNX, ``make_fx``, vmap, FakeTensor) still goes through ``torch.ops.groupnorm.forward``.

The other route out of the dispatcher is torch's own ``group_norm`` (a small plain float32 CPU call, see
:func:`groupnorm.ops.routing.served_by_torch`), followed by an in-place residual add and ReLU when the call has
them. Such calls have torch's own numerics and determinism, so their bits can differ in the last place from the
same call inside a compiled graph, which always runs the op.

Example::

    >>> import torch
    >>> from groupnorm.ops import eager, routing
    >>> x = torch.randn(2, 8, 4, 4)
    >>> args = (x, None, None, 4, 1e-5, "silu", None, None, None)
    >>> y = eager.run(routing.route(*args), *args)
    >>> torch.equal(y, torch.ops.groupnorm.forward(*args)[0])
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from groupnorm.ops import autograd
from groupnorm.ops.registry import Implementation
from groupnorm.ops.routing import Route


class _GroupNormFunction(torch.autograd.Function):
    """Autograd node of an eager call: saves what the op's autograd saves and calls the same backward."""

    @staticmethod
    def forward(ctx, impl: Implementation, *inputs):
        y, mean, rstd = impl.forward(*inputs)
        autograd.save(ctx, inputs, mean, rstd)
        ctx.implementation = impl
        return y

    @staticmethod
    def backward(ctx, grad_y):
        needs = ctx.needs_input_grad[1:]  # [0] is the implementation
        return None, *autograd.input_gradients(ctx, grad_y, needs, ctx.implementation.backward)


def run(
    route: Route,
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
    """``y`` of the op's forward for a call whose ``route`` (from :func:`groupnorm.ops.routing.route`) is not the
    op, with autograd when a tensor requires grad."""
    if route.via == "torch_group_norm":
        y = F.group_norm(x, num_groups, weight, bias, eps)
        # in place: group_norm's backward does not read its output, relu's reads only its own
        if residual is not None:
            y = y.add_(residual)
        return y.relu_() if activation == "relu" else y
    if route.via != "implementation":
        raise ValueError(f"route must be taken outside the op, got route.via={route.via!r}")
    args = (x, weight, bias, num_groups, eps, activation, residual, scale, shift)
    if torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, weight, bias, residual, scale, shift)
    ):
        return _GroupNormFunction.apply(route.implementation, *args)
    return route.implementation.forward(*args)[0]
