"""Why each GroupNorm that computes no fused activation was left so: the report's ``left`` list."""

from __future__ import annotations

from torch import nn

from groupnorm.layers.group_norm import GroupNorm
from groupnorm.patching import diffusers, timm, torchvision


def known_pair_rules(cls: type) -> tuple[str, tuple] | None:
    """``(label, rules)`` for a block class whose ``forward`` ``patch`` knows (by library and class name)."""
    owner = next(k for k in cls.__mro__ if "forward" in vars(k))
    library = owner.__module__.split(".")[0]
    tables = {
        "diffusers": diffusers.PAIR_RULES,
        "timm": timm.PAIR_RULES,
        "torchvision": torchvision.PAIR_RULES,
    }
    rules = tables.get(library, {}).get(owner.__name__)
    return None if rules is None else (owner.__name__, rules)


def _reason(parent: nn.Module, attr: str, norm: nn.Module, reasons: dict[int, str], traced: bool) -> str:
    if id(norm) in reasons:
        return reasons[id(norm)]
    owner = next(k for k in type(parent).__mro__ if "forward" in vars(k))
    note = diffusers.NOTES.get((owner.__name__, attr)) if owner.__module__.startswith("diffusers") else None
    if note is not None:
        return note
    if known_pair_rules(type(parent)) is not None:
        return f"{owner.__name__}.forward applies no activation right after it"
    if traced:
        return "not followed by a fusable activation in the traced graph"
    return (
        f"what {owner.__name__}.forward does with its output is not known (no rule for it, no torch.fx graph)"
    )


def left_norms(model: nn.Module, reasons: dict[int, str], traced: bool) -> list[tuple[str, str]]:
    """``(path, reason)`` for every GroupNorm of ``model`` without a fused activation, each module once."""
    found: list[tuple[str, str]] = []
    seen: set[int] = set()
    if isinstance(model, nn.GroupNorm) and getattr(model, "activation", None) is None:
        return [("", reasons.get(id(model), "the whole model is one GroupNorm: nothing follows it"))]
    for prefix, parent in model.named_modules():
        for attr, child in parent._modules.items():
            if not isinstance(child, nn.GroupNorm) or id(child) in seen:
                continue
            if isinstance(child, GroupNorm) and child.activation is not None:
                continue
            seen.add(id(child))
            found.append(
                (f"{prefix}.{attr}" if prefix else attr, _reason(parent, attr, child, reasons, traced))
            )
    return found
