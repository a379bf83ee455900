"""The residual ends of timm's and torchvision's ResNet blocks: ``norm -> + shortcut -> act`` as one op call.

Both libraries end a block with ``x = bnN(x); ...; x += shortcut; x = act(x)``. The block's class becomes a
subclass (:mod:`~groupnorm.patching.subclass`: same name, ``isinstance`` holds, same ``state_dict``) whose
``forward`` is the installed one with that end computed by ``bnN(x, residual=shortcut)``: the norm takes the
activation, and adds the shortcut as ``+=`` would (:func:`~groupnorm.patching.residual.add_residual`: one op call
when the op can add it exactly, else the stock arithmetic).

* timm (``BasicBlock``: ``bn2 -> act2``, ``Bottleneck``: ``bn3 -> act3``): used only while ``se`` and
  ``drop_path`` are None (they run between the norm and the add); the earlier ``bn1 -> act1`` pairs are fused by
  :mod:`~groupnorm.patching.pairs` first, in place.
* torchvision (``BasicBlock``, ``Bottleneck``): one ``relu`` module follows every norm of the block, so it cannot
  become the identity; the fused forward has every norm compute it (``bn1``, ``bn2``, and the last one with the
  residual), and is used only when all of them are GroupNorms on the fused op.

Each rewrite is used only when the installed class's ``forward`` is, statement for statement, the stock one stored
here (annotations and docstrings aside): the fused forward is a copy of it, so another library version that
computes anything else is left alone, with the reason.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torch
from torch import nn

from groupnorm.layers.group_norm import GroupNorm
from groupnorm.patching.activations import activation_name
from groupnorm.patching.report import PatchReport
from groupnorm.patching.residual import add_residual
from groupnorm.patching.resnet_forwards import (
    TIMM_BASIC,
    TIMM_BOTTLENECK,
    TORCHVISION_BASIC,
    TORCHVISION_BOTTLENECK,
    timm_basic_forward,
    timm_bottleneck_forward,
    torchvision_basic_forward,
    torchvision_bottleneck_forward,
)
from groupnorm.patching.subclass import base_class, with_forward


@dataclass(frozen=True)
class _Block:
    """A known block: its stock forward's source, the fused forward, the norms that take the activation before
    the last, and the last norm with the activation it takes (and the shortcut)."""

    stock: str
    forward: Callable[..., torch.Tensor]
    norms: tuple[str, ...]
    last: str
    act: str
    optional: tuple[str, ...] = ()  # modules between the last norm and the add, which must be None


_BLOCKS: dict[tuple[str, str], _Block] = {
    ("timm", "BasicBlock"): _Block(TIMM_BASIC, timm_basic_forward, (), "bn2", "act2", ("se", "drop_path")),
    ("timm", "Bottleneck"): _Block(
        TIMM_BOTTLENECK, timm_bottleneck_forward, (), "bn3", "act3", ("se", "drop_path")
    ),
    ("torchvision", "BasicBlock"): _Block(
        TORCHVISION_BASIC, torchvision_basic_forward, ("bn1",), "bn2", "relu"
    ),
    ("torchvision", "Bottleneck"): _Block(
        TORCHVISION_BOTTLENECK, torchvision_bottleneck_forward, ("bn1", "bn2"), "bn3", "relu"
    ),
}


def _normalized(function: ast.FunctionDef) -> str:
    """``function``'s AST without annotations, docstring or name (what the statements compute)."""
    function.name, function.returns, function.decorator_list = "forward", None, []
    for arg in ast.walk(function.args):
        if isinstance(arg, ast.arg):
            arg.annotation = None
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        function.body = body[1:]
    return ast.dump(function, include_attributes=False)


def _parsed(source: str) -> ast.FunctionDef | None:
    body = ast.parse(textwrap.dedent(source)).body
    return body[0] if len(body) == 1 and isinstance(body[0], ast.FunctionDef) else None


@cache
def _stock_reason(owner: type, stock: str) -> str | None:
    """None when ``owner.forward`` is ``stock`` (cached per class), else why the rewrite is not used."""
    try:
        installed = _parsed(inspect.getsource(owner.forward))
    except (OSError, TypeError, SyntaxError, ValueError) as error:
        return f"the source of {owner.__name__}.forward is not readable ({type(error).__name__})"
    if installed is None or _normalized(installed) != _normalized(_parsed(stock)):
        return f"{owner.__name__}.forward of this version differs from the one the fused forward copies"
    return None


def _known(cls: type) -> tuple[str, str, _Block] | None:
    """``(library, class name, block)`` for a class whose ``forward`` is a known block's (by module and name)."""
    owner = next(k for k in cls.__mro__ if "forward" in vars(k))
    library = owner.__module__.split(".")[0]
    block = _BLOCKS.get((library, owner.__name__))
    return None if block is None else (library, owner.__name__, block)


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks)


def _refusal(block: nn.Module, label: str, known: _Block, uses: Counter[int]) -> str | None:
    """Why ``block`` cannot take its fused forward, or None."""
    act = block._modules.get(known.act)
    name = activation_name(act)
    norms = [block._modules.get(n) for n in (*known.norms, known.last)]
    if name in (None, "none"):
        return f"{label}.{known.act} is {type(act).__name__}, which the op has no fused form of"
    for attr, norm in zip((*known.norms, known.last), norms):
        if not isinstance(norm, GroupNorm) or norm.activation is not None:
            what = "fused already" if isinstance(norm, GroupNorm) else type(norm).__name__
            return f"{label}.{attr} is {what}, and the fused forward needs every norm of the block"
    for attr in known.optional:
        if block._modules.get(attr) is not None:
            return (
                f"{label} runs {attr}={type(block._modules[attr]).__name__} between {known.last} and the add"
            )
    if "forward" in vars(block):
        return f"{label}'s forward is replaced on the instance (hooks?), so what runs is not known"
    if any(_hooked(m) or uses[id(m)] > 1 for m in (act, *norms)):
        return f"{label}'s norms or {known.act} have hooks or are shared with another part of the model"
    owner = next(k for k in type(block).__mro__ if "forward" in vars(k))
    return _stock_reason(owner, known.stock)


def _shortcut_norm(block: nn.Module) -> nn.Module | None:
    """The GroupNorm that ends the block's downsample branch, if any (its output is the residual)."""
    downsample = block._modules.get("downsample")
    last = (
        list(downsample.children())[-1] if isinstance(downsample, nn.Sequential) and len(downsample) else None
    )
    return last if isinstance(last, nn.GroupNorm) else None


def fuse_block(
    block: nn.Module, path: str, uses: Counter[int], report: PatchReport, reasons: dict[int, str]
) -> None:
    """Give a known timm or torchvision ResNet block the fused ``forward`` when it is safe, else record why not
    (for its last norm); any other module is left alone."""
    found = _known(type(block)) if base_class(type(block)) is None else None  # not patched already
    if found is None:
        return
    library, name, known = found
    last = block._modules.get(known.last)
    reason = _refusal(block, f"{library} {name}", known, uses)
    if reason is not None:
        if isinstance(last, GroupNorm) and last.activation is None:
            reasons.setdefault(id(last), reason)
        return
    activation = activation_name(block._modules[known.act])
    for attr in known.norms:
        block._modules[attr].activation = activation
    add_residual(last, activation, in_place=True)  # the stock blocks add with +=
    prefix = f"{path}." if path else ""
    for attr in (*known.norms, known.last):
        how = f"{name}, residual add" if attr == known.last else name
        report.fused.append((prefix + attr, prefix + known.act, activation, how))
    shortcut = _shortcut_norm(block)
    if shortcut is not None:
        reasons.setdefault(
            id(shortcut), f"the shortcut: {prefix}{known.last} adds its output in its call (residual)"
        )
    block.__class__ = with_forward(type(block), known.forward)
