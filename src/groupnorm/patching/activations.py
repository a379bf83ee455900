"""The fused-op name of an activation module from torch or from a library whose models ``patch`` knows."""

from __future__ import annotations

from torch import nn

from groupnorm.activations import module_activation_name

# timm's own activation modules (timm.layers.activations), by class name: each forward is the plain function.
_TIMM_ACTIVATIONS = {"GELU": "gelu", "GELUTanh": "gelu_tanh", "Swish": "silu"}


def activation_name(module: object) -> str | None:
    """``"relu"``, ``"silu"``, ``"gelu"``, ``"gelu_tanh"``, ``"none"`` (``nn.Identity``) or None (no fused form).

    Example::

        >>> import torch
        >>> activation_name(torch.nn.SiLU()), activation_name(torch.nn.Mish())
        ('silu', None)
    """
    name = module_activation_name(module)
    if name is not None or not isinstance(module, nn.Module):
        return name
    cls = type(module)
    if cls.__module__ == "timm.layers.activations" and "forward" in vars(cls):
        return _TIMM_ACTIVATIONS.get(cls.__name__)
    return None
