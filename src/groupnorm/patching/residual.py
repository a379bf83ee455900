"""A fused GroupNorm that takes the residual add before its activation: ``norm(x, residual=r)`` computing
``act(norm_without_act(x) + r)`` exactly as Python's ``+`` (or a block's ``+=``) then the activation would.

The op adds a residual of the input's shape, or one that broadcasts to it, of the input's dtype and device. Python
does more: it broadcasts the norm's output up to a larger ``r`` and promotes dtypes, and ``r`` may not even be a
tensor. Shapes and dtypes are known only when the model runs, so each call checks them (:func:`takes_residual`)
and otherwise computes the stock way, the norm's fused activation set aside for that call. (That switches the
module's ``activation`` for the duration of the call, as the diffusers rewrite does: not safe for one module
called from several threads at once.)

:func:`add_residual` gives a norm that ``forward`` by switching its class (:mod:`~groupnorm.patching.subclass`:
same name and ``repr``, ``isinstance`` holds, same ``state_dict``); the check lives in the norm, so a model holding
it computes the same in eager mode and in a ``torch.fx`` graph of it, where the norm stays one call.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch
from torch import nn

from groupnorm.activations import apply_activation
from groupnorm.arguments import residual_like
from groupnorm.layers.group_norm import GroupNorm
from groupnorm.patching.subclass import with_forward

_AUTOCAST_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def takes_residual(norm: nn.Module, x: torch.Tensor, residual: object) -> bool:
    """Whether the op's ``act(norm(x) + residual)`` is exactly what ``+`` then the activation compute."""
    if not isinstance(residual, torch.Tensor) or residual.device != x.device:
        return False
    try:
        if torch.broadcast_shapes(residual.shape, x.shape) != x.shape:
            return False  # the sum would be larger than the norm's output
    except RuntimeError:
        return False
    if residual.dtype == x.dtype:
        return True
    # Under CUDA autocast groupnorm.GroupNorm runs in float32 on float32 copies of x and the residual, as the stock
    # float32 norm output plus the residual would (a subclass with a forward of its own may not cast).
    stock = getattr(type(norm), "_groupnorm_base", type(norm))
    return (
        x.device.type == "cuda"
        and torch.is_autocast_enabled("cuda")
        and stock.forward is GroupNorm.forward
        and x.dtype in _AUTOCAST_DTYPES
        and residual.dtype in _AUTOCAST_DTYPES
    )


def without_activation(call: Callable[[], torch.Tensor], norm: GroupNorm) -> torch.Tensor:
    """``call()`` with ``norm``'s fused activation set aside (the module itself normalizes: a DistributedGroupNorm
    keeps its whole-image statistics)."""
    fused, norm.activation = norm.activation, None
    try:
        return call()
    finally:
        norm.activation = fused


def _forward(
    self: GroupNorm,
    input: torch.Tensor,
    residual: object,
    scale: torch.Tensor | None,
    shift: torch.Tensor | None,
    add: Callable[[torch.Tensor, object], torch.Tensor],
) -> torch.Tensor:
    stock = type(self)._groupnorm_base.forward
    if residual is None or takes_residual(self, input, residual):
        residual = None if residual is None else residual_like(residual, input)  # a DistributedGroupNorm's op
        return stock(self, input, residual=residual, scale=scale, shift=shift)  # does not broadcast it
    plain = without_activation(lambda: stock(self, input, scale=scale, shift=shift), self)
    return apply_activation(add(plain, residual), self.activation or "none")


def residual_forward(
    self: GroupNorm,
    input: torch.Tensor,
    *,
    residual: object = None,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
) -> torch.Tensor:
    """``act(norm(x) + residual)``, the ``+`` of a traced graph."""
    return _forward(self, input, residual, scale, shift, operator.add)


def residual_iadd_forward(
    self: GroupNorm,
    input: torch.Tensor,
    *,
    residual: object = None,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
) -> torch.Tensor:
    """``y = norm(x); y += residual; act(y)``, the ResNet blocks' in-place add (``y`` keeps its dtype)."""
    return _forward(self, input, residual, scale, shift, operator.iadd)


def add_residual(norm: GroupNorm, activation: str, *, in_place: bool = False) -> None:
    """Make ``norm`` (in place) compute ``activation`` after the residual its calls pass, added as ``+`` would
    add it (``+=`` with ``in_place``)."""
    forward = residual_iadd_forward if in_place else residual_forward
    norm.__class__ = with_forward(type(norm), forward)
    norm.activation = activation


def carry_residual(old: nn.Module, new: nn.Module) -> None:
    """Give ``new``, which replaces ``old`` (e.g. as a DistributedGroupNorm), the residual forward ``old`` had."""
    forward = vars(type(old)).get("_groupnorm_forward")
    if forward in (residual_forward, residual_iadd_forward) and type(new).forward is not forward:
        new.__class__ = with_forward(type(new), forward)
