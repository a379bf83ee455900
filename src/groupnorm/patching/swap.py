"""Move a model's GroupNorms onto :class:`groupnorm.GroupNorm`: torch's, and timm's (whose ``forward`` is known).

Each replacement keeps the parameters bit for bit, their ``requires_grad``, the device, dtype and training flag;
a module shared by several parents gets one shared replacement. A GroupNorm subclass with a ``forward`` of its
own that no rule knows is left in place, with the reason.
"""

from __future__ import annotations

from torch import nn

from groupnorm.layers.group_norm import GroupNorm
from groupnorm.patching import timm
from groupnorm.patching.report import PatchReport


def _replacement(m: nn.Module, path: str, report: PatchReport, reasons: dict[int, str]) -> nn.Module | None:
    if not isinstance(m, nn.GroupNorm) or isinstance(m, GroupNorm):
        return None
    if type(m).forward is nn.GroupNorm.forward:
        return GroupNorm.from_module(m)
    kind = timm.classify_norm(m)
    if kind is None:
        reasons[id(m)] = (
            f"unknown subclass {type(m).__name__} with its own forward (what it computes is not known)"
        )
        return None
    what, detail = kind
    if what == "skip":
        reasons[id(m)] = detail
        return None
    if what == "plain" or detail == "none":
        return GroupNorm.from_module(m)
    report.fused.append((path, f"{path}.act" if path else "act", detail, type(m).__name__))
    return GroupNorm.from_module(m, activation=detail)


def swap_norms(model: nn.Module, report: PatchReport, reasons: dict[int, str]) -> nn.Module:
    """``model`` with its GroupNorms swapped in place (the root itself may be replaced: the result is returned).
    Swapped paths go to ``report.swapped``; why a GroupNorm stayed goes to ``reasons`` (by module id)."""
    done: dict[int, nn.Module] = {}

    def swapped(m: nn.Module, path: str) -> nn.Module:
        if id(m) not in done:
            new = _replacement(m, path, report, reasons)
            done[id(m)] = m if new is None else new
        if done[id(m)] is not m:
            report.swapped.append(path)
        return done[id(m)]

    root = swapped(model, "")
    if root is not model:
        return root
    for prefix, parent in list(model.named_modules()):
        for name, child in list(parent._modules.items()):
            if child is not None:
                new = swapped(child, f"{prefix}.{name}" if prefix else name)
                if new is not child:
                    setattr(parent, name, new)
    return model
