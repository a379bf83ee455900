"""Fuse a GroupNorm child of an ``nn.Sequential`` with the activation child right after it.

A ``Sequential`` feeds each child's output only to the next child, so this holds for any model; the activation
child becomes ``nn.Identity`` (it holds no state). torchvision's ``Conv2dNormActivation`` (FCOS and
RetinaNet-v2 heads) and diffusers' ``TemporalConvLayer`` are such Sequentials.
"""

from __future__ import annotations

from collections import Counter

from torch import nn

from groupnorm.layers.group_norm import GroupNorm
from groupnorm.patching.activations import activation_name
from groupnorm.patching.report import PatchReport


def fuse_sequentials(
    model: nn.Module, uses: Counter[int], report: PatchReport, reasons: dict[int, str]
) -> None:
    """Fuse every GroupNorm -> activation pair of adjacent ``Sequential`` children; record why others stay."""
    for prefix, parent in model.named_modules():
        if type(parent).forward is not nn.Sequential.forward or "forward" in vars(parent):
            continue
        names = list(parent._modules)
        for i, norm_name in enumerate(names):
            norm = parent._modules[norm_name]
            if not isinstance(norm, GroupNorm) or norm.activation is not None:
                continue
            if i + 1 == len(names):
                reasons.setdefault(id(norm), "last child of its Sequential: what reads its output is outside")
                continue
            act_name = names[i + 1]
            act = parent._modules[act_name]
            name = activation_name(act)
            if name in (None, "none"):
                reasons.setdefault(
                    id(norm), f"followed by {type(act).__name__} in its Sequential, not a fusable activation"
                )
                continue
            if uses[id(act)] > 1 or uses[id(norm)] > 1 or act._forward_hooks or act._forward_pre_hooks:
                reasons.setdefault(
                    id(norm), "its activation has hooks or is shared with another part of the model"
                )
                continue
            norm.activation = name
            parent._modules[act_name] = nn.Identity().train(act.training)
            path = f"{prefix}." if prefix else ""
            report.fused.append((path + norm_name, path + act_name, name, "Sequential"))
