"""What ``patch`` knows about timm (recognised by class name and module, timm itself is never imported).

* ``GroupNorm`` and ``GroupNorm1`` (``timm.layers.norm``) override ``forward`` only to choose between
  ``F.group_norm`` and timm's fast-norm path (which, under autocast, normalizes in the low-precision dtype);
  both compute plain GroupNorm, so they move onto :class:`groupnorm.GroupNorm` like ``torch.nn.GroupNorm``.
* ``GroupNormAct`` and ``GroupNorm1Act`` (``timm.layers.norm_act``) compute ``act(drop(group_norm(x)))``; with
  ``drop`` the identity and ``act`` ReLU, SiLU, GELU or the identity they become one fused
  :class:`groupnorm.GroupNorm` (their ``drop``/``act`` children hold no state, so the ``state_dict`` is kept).
* ResNet blocks apply ``bn1 -> act1`` (and ``bn2 -> drop_block -> act2``) in ``forward``; ``pairs`` fuses them
  once the installed source confirms it.
"""

from __future__ import annotations

from torch import nn

from groupnorm.patching.activations import activation_name
from groupnorm.patching.pairs import PairRule

_PLAIN = ("GroupNorm", "GroupNorm1")
_WITH_ACTIVATION = ("GroupNormAct", "GroupNorm1Act")

PAIR_RULES: dict[str, tuple[PairRule, ...]] = {
    "ResNet": (PairRule("bn1", "act1"),),
    "BasicBlock": (PairRule("bn1", "act1", between=("drop_block",)),),
    "Bottleneck": (
        PairRule("bn1", "act1"),
        PairRule("bn2", "act2", between=("drop_block",)),
    ),
}


def _forward_owner(m: nn.Module) -> type:
    return next(k for k in type(m).__mro__ if "forward" in vars(k))


def classify_norm(m: nn.GroupNorm) -> tuple[str, str] | None:
    """For one of timm's GroupNorm classes: ``("plain", "")``, ``("act", activation name)`` or
    ``("skip", reason)``; None for any other module."""
    owner = _forward_owner(m)
    if owner.__module__.split(".")[0] != "timm":
        return None
    if owner.__name__ in _PLAIN:
        return ("plain", "")
    if owner.__name__ not in _WITH_ACTIVATION:
        return None
    drop, act = getattr(m, "drop", None), getattr(m, "act", None)
    if not isinstance(drop, nn.Identity):
        return ("skip", f"{owner.__name__} applies drop={type(drop).__name__} before its activation")
    name = activation_name(act)
    if name is None:
        return ("skip", f"{owner.__name__}'s activation {type(act).__name__} has no fused form in the op")
    return ("act", name)
