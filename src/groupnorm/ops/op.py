"""The registered ops ``torch.ops.groupnorm.forward`` and ``torch.ops.groupnorm.backward``.

Contract: ``forward(x, weight, bias, num_groups, eps, activation, residual, scale, shift)``
returns ``(y, mean, rstd)`` with ``y = act((x_hat * weight + bias) * (1 + scale) + shift + residual)``, y in x's
dtype and memory format, mean/rstd of shape (N, G) in the accumulation dtype. ``backward(grad_y, x, weight, bias,
mean, rstd, num_groups, activation, residual, scale, shift, output_mask)`` returns
``(dx, dweight, dbias, dresidual, dscale, dshift)``, an empty tensor for each gradient masked out or without an
input; it recomputes x_hat from x, mean and rstd.

Each call is served by the implementation that :func:`groupnorm.ops.routing.route` (``inside_op=True``) picks: a
registered kernel for the tensor's device when one accepts it, else the plain-torch implementation. The ops are
``torch.library.custom_op``\\ s with fake implementations, autograd (:mod:`groupnorm.ops.autograd`) and autocast
registered, so ``torch.compile(fullgraph=True)`` takes them without a graph break. Under compile they are opaque,
except where the implementation serving the call has a traceable form (the Triton kernels on CUDA): there they
decompose into its kernel launches, which the compiled graph then holds (:mod:`groupnorm.ops.decomposition`).

Example::

    >>> import torch, groupnorm.ops
    >>> x = torch.randn(2, 8, 4, 4)
    >>> y, mean, rstd = torch.ops.groupnorm.forward(x, None, None, 4, 1e-5, "silu", None, None, None)
    >>> mean.shape
    torch.Size([2, 4])
"""

from __future__ import annotations

import torch
from torch import Tensor

from groupnorm.ops import autograd, decomposition, registry, torch_impl
from groupnorm.ops.checks import accumulation_dtype, check_forward_args
from groupnorm.ops.routing import route

registry.set_fallback(
    registry.Implementation(
        name="torch",
        device_type="any",
        forward=torch_impl.forward,
        backward=torch_impl.backward,
        description="plain torch ops, float32/float64 accumulation",
    )
)


@torch.library.custom_op("groupnorm::forward", mutates_args=())
def forward(
    x: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    num_groups: int,
    eps: float,
    activation: str,
    residual: Tensor | None,
    scale: Tensor | None,
    shift: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    check_forward_args(x, weight, bias, num_groups, eps, activation, residual, scale, shift)
    impl = route(x, inside_op=True).implementation
    return impl.forward(x, weight, bias, num_groups, eps, activation, residual, scale, shift)


@forward.register_fake
def _forward_fake(x, weight, bias, num_groups, eps, activation, residual, scale, shift):
    check_forward_args(x, weight, bias, num_groups, eps, activation, residual, scale, shift)
    stats_dtype = accumulation_dtype(x.dtype)
    n = x.shape[0]
    return (
        torch.empty_like(x),
        x.new_empty((n, num_groups), dtype=stats_dtype),
        x.new_empty((n, num_groups), dtype=stats_dtype),
    )


@torch.library.custom_op("groupnorm::backward", mutates_args=())
def backward(
    grad_y: Tensor,
    x: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    mean: Tensor,
    rstd: Tensor,
    num_groups: int,
    activation: str,
    residual: Tensor | None,
    scale: Tensor | None,
    shift: Tensor | None,
    output_mask: list[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    _check_output_mask(output_mask)
    impl = route(x, inside_op=True).implementation
    return impl.backward(
        grad_y, x, weight, bias, mean, rstd, num_groups, activation, residual, scale, shift, output_mask
    )


def _check_output_mask(output_mask: list[bool]) -> None:
    if len(output_mask) != torch_impl.NUM_GRADS:
        raise ValueError(
            f"output_mask must have {torch_impl.NUM_GRADS} flags, got output_mask={output_mask!r}"
        )


@backward.register_fake
def _backward_fake(
    grad_y, x, weight, bias, mean, rstd, num_groups, activation, residual, scale, shift, output_mask
):
    owners = (x, weight, bias, residual, scale, shift)
    return tuple(
        torch.empty_like(owner) if wanted and owner is not None else x.new_empty(0)
        for wanted, owner in zip(output_mask, owners)
    )


def _setup_context(ctx, inputs, output) -> None:
    _y, mean, rstd = output
    autograd.save(ctx, inputs, mean, rstd)
    ctx.mark_non_differentiable(mean, rstd)


def _backward_formula(ctx, grad_y, _grad_mean, _grad_rstd):
    return autograd.input_gradients(ctx, grad_y, ctx.needs_input_grad, torch.ops.groupnorm.backward)


forward.register_autograd(_backward_formula, setup_context=_setup_context)

# Where compile traces (AOTAutograd), the implementation's traceable form replaces the op; eager calls are unchanged.
# The traced call checks its arguments as the op's body does.
decomposition.register(forward, x_position=0, attribute="traced_forward", check=check_forward_args)
decomposition.register(
    backward, x_position=1, attribute="traced_backward", check=lambda *args: _check_output_mask(args[-1])
)

# Under CUDA autocast torch's group_norm is on the float32 list (inputs cast up, float32 out): do the same. CPU
# autocast leaves torch's group_norm alone (a bfloat16 input with float32 weights gives bfloat16, computed in
# float32), which is what the op does without any registration, since it accepts float32 weights beside
# low-precision inputs.
torch.library.register_autocast("groupnorm::forward", "cuda", torch.float32)
