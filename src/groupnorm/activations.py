"""The activations the op can fuse, with their derivatives written as differentiable torch expressions.

Derivatives are explicit (not autograd) so that the backward recomputes them from the pre-activation it already
holds; being torch expressions, they stay differentiable, which is what makes double backward work on the
plain-torch path.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

ACTIVATIONS: tuple[str, ...] = ("none", "relu", "silu", "gelu", "gelu_tanh")

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_TANH_COEF = 0.044715


def canonical_activation(activation: str | None) -> str:
    """Map ``None`` to ``"none"`` and reject unknown names with an error that lists the known ones."""
    if activation is None:
        return "none"
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS} or None, got activation={activation!r}")
    return activation


def _gelu_tanh_derivative(z: torch.Tensor) -> torch.Tensor:
    inner = _SQRT_2_OVER_PI * (z + _GELU_TANH_COEF * z * z * z)
    t = torch.tanh(inner)
    d_inner = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_TANH_COEF * z * z)
    return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * d_inner


def _silu_derivative(z: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(z)
    return s * (1.0 + z * (1.0 - s))


def _gelu_derivative(z: torch.Tensor) -> torch.Tensor:
    cdf = 0.5 * (1.0 + torch.erf(z * _INV_SQRT_2))
    pdf = torch.exp(-0.5 * z * z) * _INV_SQRT_2PI
    return cdf + z * pdf


_FORWARD: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "silu": F.silu,
    "gelu": F.gelu,
    "gelu_tanh": lambda z: F.gelu(z, approximate="tanh"),
}

_DERIVATIVE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": lambda z: (z > 0).to(z.dtype),
    "silu": _silu_derivative,
    "gelu": _gelu_derivative,
    "gelu_tanh": _gelu_tanh_derivative,
}


def module_activation_name(module: object) -> str | None:
    """The fused-op name of a torch activation module (``nn.ReLU``, ``nn.SiLU``, ``nn.GELU``, ``nn.Identity``),
    or ``None`` when the op has no equivalent."""
    if isinstance(module, torch.nn.Identity):
        return "none"
    if isinstance(module, torch.nn.ReLU):
        return "relu"
    if isinstance(module, torch.nn.SiLU):
        return "silu"
    if isinstance(module, torch.nn.GELU):
        return "gelu_tanh" if module.approximate == "tanh" else "gelu"
    return None


def apply_activation(z: torch.Tensor, activation: str) -> torch.Tensor:
    """``act(z)`` for a canonical activation name (``"none"`` returns ``z``)."""
    return z if activation == "none" else _FORWARD[activation](z)


def activation_derivative(z: torch.Tensor, activation: str) -> torch.Tensor | None:
    """``act'(z)``, or ``None`` for the identity (so callers can skip a multiply by one)."""
    return None if activation == "none" else _DERIVATIVE[activation](z)
