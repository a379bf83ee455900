"""``patch``: speed up a model you already have by moving its GroupNorms onto the fused op.

Every weight is kept bit for bit (same ``state_dict`` keys and values, device, dtype, training flag):

1. every ``torch.nn.GroupNorm`` becomes a :class:`groupnorm.GroupNorm`, and so do timm's ``GroupNorm``,
   ``GroupNorm1``, ``GroupNormAct`` and ``GroupNorm1Act`` (whose ``forward`` is known: plain GroupNorm, or
   GroupNorm then its ReLU/SiLU/GELU, which the new module computes in the same call);
2. a GroupNorm whose output goes only into a SiLU, GELU or ReLU takes that activation into its own call, so the
   activation no longer reads and writes the whole tensor again. Four rewrites find the pattern, in this order:

   - known blocks of diffusers (``ResnetBlock2D``, ``TemporalResnetBlock``: norm1 -> SiLU, norm2 -> SiLU, with the
     ``"scale_shift"`` time embedding in the op's epilogue; the encoder's, decoder's and UNets'
     ``conv_norm_out -> conv_act``) and timm (ResNet ``bn1 -> act1`` ...), recognised by class name, checked
     against the installed source and structure (:mod:`groupnorm.patching.diffusers`, :mod:`~groupnorm.patching.timm`);
   - in any ``nn.Sequential``, a GroupNorm child followed directly by an activation module (torchvision's
     ``Conv2dNormActivation``, e.g. in the FCOS and RetinaNet-v2 heads);
   - for models ``torch.fx`` can trace, the graph: a GroupNorm called once whose single user is an activation.
     The model is then returned as a ``torch.fx.GraphModule``.

   A fused activation module becomes ``nn.Identity``; a fused GroupNorm shows its activation as
   ``module.activation``.

The returned :class:`PatchReport` lists what was swapped and fused, and every GroupNorm left without an activation
with the reason. A model with nothing to move or fuse is returned unchanged, and the report says so; one whose
GroupNorms have no activation to take gets the swap alone (the report starts "nothing to fuse").

Example::

    >>> import torch, groupnorm
    >>> block = torch.nn.Sequential(torch.nn.GroupNorm(8, 32), torch.nn.SiLU(), torch.nn.Conv2d(32, 32, 3))
    >>> block, report = groupnorm.patch(block)
    >>> print(report)  # doctest: +NORMALIZE_WHITESPACE
    patch: 1 GroupNorm(s) moved to groupnorm.GroupNorm, 1 activation(s) fused, 0 left without one
      fused 0 + 1 (silu, Sequential)
    >>> block[0].activation
    'silu'
    >>> print(groupnorm.patch(torch.nn.Linear(4, 4))[1])
    patch: nothing to fuse, model unchanged (no GroupNorm found)
"""

from __future__ import annotations

from collections import Counter

from torch import nn

from groupnorm.convert import convert_norms
from groupnorm.patching import diffusers
from groupnorm.patching.graph import fuse_graph, trace
from groupnorm.patching.leftovers import known_pair_rules, left_norms
from groupnorm.patching.pairs import fuse_pair
from groupnorm.patching.report import PatchReport
from groupnorm.patching.sequential import fuse_sequentials
from groupnorm.patching.swap import swap_norms

__all__ = ["PatchReport", "patch"]


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


def _fuse_traced(model: nn.Module, report: PatchReport, reasons: dict[int, str]) -> nn.Module:
    try:
        traced = trace(model)
    except Exception as error:  # noqa: BLE001  (any tracing failure just means: no graph rewrite)
        report.trace_error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        return model
    report.traced = True
    before = len(report.fused)
    fuse_graph(traced, report, reasons)
    if len(report.fused) == before:
        return model  # nothing to rewrite: keep the user's own module
    return traced.train(model.training)


def patch(
    model: nn.Module, *, fuse: bool = True, trace: bool = True, process_group=None
) -> tuple[nn.Module, PatchReport]:
    """Move ``model``'s GroupNorms onto the fused op and fuse GroupNorm->activation pairs; returns
    ``(model, report)``. The model is changed in place; with a traced rewrite the returned model is a
    ``torch.fx.GraphModule`` sharing its parameters. ``fuse=False`` only swaps (timm's norm+activation modules
    keep their activation, now fused); ``trace=False`` skips torch.fx. With ``process_group`` every GroupNorm
    becomes a :class:`groupnorm.DistributedGroupNorm` of that group (statistics over the parts of an image split
    spatially over its ranks), keeping the fused activations.

    Example::

        >>> import torch, groupnorm
        >>> model = torch.nn.Sequential(torch.nn.GroupNorm(2, 8), torch.nn.Conv2d(8, 8, 1))
        >>> model, report = groupnorm.patch(model)
        >>> report.left
        [('0', 'followed by Conv2d in its Sequential, not a fusable activation')]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got model of type {type(model).__name__}")
    report = PatchReport()
    reasons: dict[int, str] = {}  # why a GroupNorm (by module id) was not fused, from the rewrite that saw it
    model = swap_norms(model, report, reasons)
    if fuse:
        uses = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
        _fuse_known_blocks(model, uses, report, reasons)
        fuse_sequentials(model, uses, report, reasons)
        if trace:
            model = _fuse_traced(model, report, reasons)
    report.left = left_norms(model, reasons, report.traced)
    if process_group is not None:
        convert_norms(model, source="gn", process_group=process_group)
    return model, report
