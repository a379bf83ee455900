"""``patch``: speed up a model you already have by moving its GroupNorms onto the fused op.

Every weight is kept bit for bit (same ``state_dict`` keys and values, device, dtype, training flag):

1. every ``torch.nn.GroupNorm`` becomes a :class:`groupnorm.GroupNorm`, and so do timm's ``GroupNorm``,
   ``GroupNorm1``, ``GroupNormAct`` and ``GroupNorm1Act`` (whose ``forward`` is known: plain GroupNorm, or
   GroupNorm then its ReLU/SiLU/GELU, which the new module computes in the same call);
2. a GroupNorm whose output goes only into a SiLU, GELU or ReLU takes that activation into its own call, so the
   activation no longer reads and writes the whole tensor again; and one whose output is added to another tensor
   (the shortcut of a residual block) right before such an activation takes the add too
   (``act(norm(x) + shortcut)`` as one call, ``residual=`` of :class:`groupnorm.GroupNorm`). Four rewrites find
   the patterns, in this order:

   - known blocks of diffusers (``ResnetBlock2D``, ``TemporalResnetBlock``: norm1 -> SiLU, norm2 -> SiLU, with the
     ``"scale_shift"`` time embedding in the op's epilogue; the encoder's, decoder's and UNets'
     ``conv_norm_out -> conv_act``), timm (ResNet ``bn1 -> act1`` ..., and each ``BasicBlock``/``Bottleneck``'s
     last norm with the shortcut add and ``act2``/``act3``) and torchvision (ResNet's stem ``bn1 -> relu``; each
     ``BasicBlock``/``Bottleneck``'s norms with ``relu``, the last one with the shortcut add), recognised by class
     name, checked against the installed source and structure (:mod:`groupnorm.patching.diffusers`,
     :mod:`~groupnorm.patching.timm`, :mod:`~groupnorm.patching.resnets`);
   - in any ``nn.Sequential``, a GroupNorm child followed directly by an activation module (torchvision's
     ``Conv2dNormActivation``, e.g. in the FCOS and RetinaNet-v2 heads);
   - for models ``torch.fx`` can trace, the graph: a GroupNorm called once whose single user is an activation
     (module, function or method; the activation module may be used elsewhere too, as in torchvision's ResNet
     blocks), or an add (``+``, ``+=``, ``torch.add``) with another node whose single user is such an
     activation. The model is traced twice, with its modules' training flags as they are and flipped; when the
     graphs differ (a forward branching on ``self.training``) there is no graph rewrite, since the graph would
     keep one mode's branch.

   A fused activation module becomes ``nn.Identity`` (or, where the block's ``forward`` uses it after several
   norms, stays and is no longer called: the block's class becomes a same-named subclass with the fused
   ``forward``, ``isinstance`` still holds); a fused GroupNorm shows its activation as ``module.activation``. A
   norm that takes a residual adds it exactly as ``+`` would: the shapes and dtypes are checked on every call, and
   a shortcut the op cannot add exactly (one that would broadcast the norm's output, another dtype) is added the
   stock way (:mod:`~groupnorm.patching.residual`).

What comes back, and what happens to the caller's model: ``patch`` returns the model, like
``SyncBatchNorm.convert_sync_batchnorm``, so ``model = groupnorm.patch(model)`` is ready to call. Rewrites 1 and 2
(all but the graph) change the caller's model in place; the returned model is that same object (or, when the
model itself is one GroupNorm, its replacement). Only when the graph rewrite fused a pair is the returned model a
new ``torch.fx.GraphModule``: its forward is the traced code without the fused activations (and adds), and it holds
the caller's submodules and parameter tensors, except that each GroupNorm fused there is a new module of its own
(same class, or for a residual its same-named subclass, the same parameter tensors). The caller's model keeps those
norms unfused and its own forward, which still applies their activations. So the caller's model and the returned
one always both compute what the model computed before (at float rounding), share every parameter (training either
trains both; ``train()``/``eval()`` on either reaches the submodules they share), and the caller's model is never
left with a norm whose activation its forward applies a second time. Patching the returned model again finds
nothing to do and returns it unchanged, as the report says.

The :class:`PatchReport` lists what was swapped and fused, and every GroupNorm left without an activation with
the reason. Each call logs it at INFO on the ``"groupnorm"`` logger (one record, ``str(report)``; the library adds
no handlers, so it shows once the application configures logging), and ``return_report=True`` returns
``(model, report)``. A model with nothing to move or fuse is returned unchanged, and the report says so (counting
the GroupNorms fused already); one whose GroupNorms have no activation to take gets the swap alone (the report
starts "nothing to fuse").

Example::

    >>> import torch, groupnorm
    >>> block = torch.nn.Sequential(torch.nn.GroupNorm(8, 32), torch.nn.SiLU(), torch.nn.Conv2d(32, 32, 3))
    >>> block = groupnorm.patch(block)
    >>> block[0].activation
    'silu'
    >>> block = torch.nn.Sequential(torch.nn.GroupNorm(8, 32), torch.nn.SiLU(), torch.nn.Conv2d(32, 32, 3))
    >>> block, report = groupnorm.patch(block, return_report=True)
    >>> print(report)  # doctest: +NORMALIZE_WHITESPACE
    patch: 1 GroupNorm(s) moved to groupnorm.GroupNorm, 1 activation(s) fused, 0 left without one
      fused 0 + 1 (silu, Sequential)
    >>> print(groupnorm.patch(torch.nn.Linear(4, 4), return_report=True)[1])
    patch: nothing to fuse, model unchanged (no GroupNorm found)
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Literal, overload

from torch import nn

from groupnorm.convert import _check_return_report, _convert_norms
from groupnorm.layers.group_norm import GroupNorm
from groupnorm.patching import diffusers, resnets
from groupnorm.patching.graph import ModeDependentGraph, fuse_graph, trace
from groupnorm.patching.leftovers import known_pair_rules, left_norms
from groupnorm.patching.pairs import fuse_pair
from groupnorm.patching.report import PatchReport
from groupnorm.patching.residual import carry_residual
from groupnorm.patching.sequential import fuse_sequentials
from groupnorm.patching.swap import swap_norms

__all__ = ["PatchReport", "patch"]

_log = logging.getLogger("groupnorm")


def _fuse_known_blocks(
    model: nn.Module, uses: Counter[int], report: PatchReport, reasons: dict[int, str]
) -> None:
    for path, block in list(model.named_modules()):
        if diffusers.fuse_block(block, path, uses, report, reasons):
            continue
        known = known_pair_rules(type(block))
        if known is not None:
            label, rules = known
            for rule in rules:
                fuse_pair(block, path, rule, label, uses, report, reasons)
        # After the pairs: they read the block's source, which the class swap of a fused block hides.
        resnets.fuse_block(block, path, uses, report, reasons)


def _fuse_traced(model: nn.Module, report: PatchReport, reasons: dict[int, str]) -> nn.Module:
    try:
        traced = trace(model)
    except ModeDependentGraph as error:
        report.trace_error = str(error)
        return model
    except Exception as error:  # noqa: BLE001  (any tracing failure just means: no graph rewrite)
        first_line = str(error).splitlines()[0] if str(error) else ""
        report.trace_error = f"torch.fx could not trace the model: {type(error).__name__}: {first_line}"
        return model
    report.traced = True
    before = len(report.fused)
    fuse_graph(traced, {id(m) for m in model.modules()}, report, reasons)
    if len(report.fused) == before:
        return model  # nothing to rewrite: keep the user's own module
    return traced


def _distribute(model: nn.Module, process_group: object, reasons: dict[int, str]) -> nn.Module:
    """``model`` with every GroupNorm a DistributedGroupNorm (in place); each replacement keeps its reason, and
    its way of adding a residual (a fused block's last norm)."""
    before = {path: m for path, m in model.named_modules() if isinstance(m, nn.GroupNorm)}
    model, _ = _convert_norms(model, source="gn", process_group=process_group)  # patch's report is the record
    for path, m in model.named_modules():
        old = before.get(path)
        if old is None or old is m:
            continue
        if id(old) in reasons:
            reasons.setdefault(id(m), reasons[id(old)])
        carry_residual(old, m)
    return model


def _fused_already(model: nn.Module) -> list[str]:
    return [p for p, m in model.named_modules() if isinstance(m, GroupNorm) and m.activation is not None]


@overload
def patch(
    model: nn.Module,
    *,
    fuse: bool = ...,
    trace: bool = ...,
    process_group: object | None = ...,
    return_report: Literal[False] = ...,
) -> nn.Module: ...


@overload
def patch(
    model: nn.Module,
    *,
    fuse: bool = ...,
    trace: bool = ...,
    process_group: object | None = ...,
    return_report: Literal[True],
) -> tuple[nn.Module, PatchReport]: ...


def patch(
    model: nn.Module,
    *,
    fuse: bool = True,
    trace: bool = True,
    process_group: object | None = None,
    return_report: bool = False,
) -> nn.Module | tuple[nn.Module, PatchReport]:
    """Move ``model``'s GroupNorms onto the fused op and fuse GroupNorm->activation pairs (with a residual add
    between them too); returns the model, ready to call: ``model = groupnorm.patch(model)``. ``model`` is
    changed in place and keeps computing what it computed; the returned model is ``model`` itself, or, when the
    torch.fx rewrite fused a pair, a ``torch.fx.GraphModule`` over its submodules and parameters with its own
    fused GroupNorms (see the module docstring), so use the returned one. The :class:`PatchReport` (what was
    swapped, fused and left, and why) is logged at INFO on the ``"groupnorm"`` logger as one record; with
    ``return_report=True`` the call returns ``(model, report)``.

    ``fuse=False`` only swaps (timm's norm+activation modules keep their activation, now fused); ``trace=False``
    skips torch.fx. With ``process_group`` every GroupNorm of ``model`` becomes a
    :class:`groupnorm.DistributedGroupNorm` of that group (statistics over the parts of an image split spatially
    over its ranks), keeping the fused activations.

    Example::

        >>> import torch, groupnorm
        >>> model = torch.nn.Sequential(torch.nn.GroupNorm(8, 32), torch.nn.SiLU())
        >>> model = groupnorm.patch(model)
        >>> model(torch.randn(2, 32, 4, 4)).shape
        torch.Size([2, 32, 4, 4])
        >>> model = torch.nn.Sequential(torch.nn.GroupNorm(2, 8), torch.nn.Conv2d(8, 8, 1))
        >>> model, report = groupnorm.patch(model, return_report=True)
        >>> report.left
        [('0', 'followed by Conv2d in its Sequential, not a fusable activation')]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got model of type {type(model).__name__}")
    _check_return_report(return_report)
    report = PatchReport(already=_fused_already(model))
    reasons: dict[int, str] = {}  # why a GroupNorm (by module id) was not fused, from the rewrite that saw it
    model = swap_norms(model, report, reasons)
    if fuse:
        uses = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
        _fuse_known_blocks(model, uses, report, reasons)
        fuse_sequentials(model, uses, report, reasons)
    # Before the graph is traced, so that the graph module holds the distributed norms too.
    if process_group is not None:
        model = _distribute(model, process_group, reasons)
    if fuse and trace:
        model = _fuse_traced(model, report, reasons)
    report.left = left_norms(model, reasons, report.traced)
    _log.info("%s", report)
    return (model, report) if return_report else model
