"""The activations the op can fuse: one table (:data:`TABLE`) of names, the codes every kernel backend uses, and
the plain-torch path's forward and derivative formulas.

The CPU kernels (``groupnorm.ops.cpu.kernels``) and the Triton kernels (``groupnorm.ops.triton.epilogue``) take
their codes from :data:`ACTIVATION_CODES`; the C enum ``ACT_*`` of ``ops/cpu/csrc`` and the Triton branches must
match it, which ``tests/ops/test_activation_table.py`` and ``tests/triton/test_triton_epilogue.py`` check.
Derivatives are explicit (not autograd) so that the backward recomputes them from the pre-activation it already
holds; being torch expressions, they stay differentiable, which is what makes double backward work on the
plain-torch path.

Adding an activation: a row here, a case in the C ``act``/``act_grad`` functions and enum, a branch in Triton's
``activate``/``activate_grad`` (and, for ``patch``, the module or function it replaces).

Example::

    >>> import torch
    >>> from groupnorm.activations import ACTIVATION_CODES, TABLE, apply_activation
    >>> [(a.name, a.code) for a in TABLE][:3]
    [('none', 0), ('relu', 1), ('silu', 2)]
    >>> ACTIVATION_CODES["gelu_tanh"]
    4
    >>> apply_activation(torch.tensor([-1.0, 2.0]), "relu")
    tensor([0., 2.])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_TANH_COEF = 0.044715


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


def _relu_derivative(z: torch.Tensor) -> torch.Tensor:
    return (z > 0).to(z.dtype)


def _gelu_tanh(z: torch.Tensor) -> torch.Tensor:
    return F.gelu(z, approximate="tanh")


@dataclass(frozen=True)
class Activation:
    """One fusable activation: ``name`` (the op's argument), ``code`` (the kernels' number for it), and the
    plain-torch path's ``forward`` and ``derivative`` (``None`` for the identity)."""

    name: str
    code: int
    forward: Callable[[torch.Tensor], torch.Tensor] | None
    derivative: Callable[[torch.Tensor], torch.Tensor] | None


TABLE: tuple[Activation, ...] = (
    Activation("none", 0, None, None),
    Activation("relu", 1, torch.relu, _relu_derivative),
    Activation("silu", 2, F.silu, _silu_derivative),
    Activation("gelu", 3, F.gelu, _gelu_derivative),
    Activation("gelu_tanh", 4, _gelu_tanh, _gelu_tanh_derivative),
)
ACTIVATIONS: tuple[str, ...] = tuple(a.name for a in TABLE)
ACTIVATION_CODES: dict[str, int] = {a.name: a.code for a in TABLE}
_BY_NAME: dict[str, Activation] = {a.name: a for a in TABLE}


def canonical_activation(activation: str | None) -> str:
    """Map ``None`` to ``"none"`` and reject unknown names with an error that lists the known ones."""
    if activation is None:
        return "none"
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS} or None, got activation={activation!r}")
    return activation


def module_activation_name(module: object) -> str | None:
    """The fused-op name of a torch activation module (``nn.ReLU``, ``nn.SiLU``, ``nn.GELU``, ``nn.Identity``),
    or ``None`` when the op has no equivalent (including an ``nn.GELU`` whose ``approximate`` is neither
    ``"none"`` nor ``"tanh"``, and a subclass with a ``forward`` of its own)."""
    # a subclass counts only if it keeps torch's forward: one that computes something else must not be fused
    for cls, name in ((torch.nn.Identity, "none"), (torch.nn.ReLU, "relu"), (torch.nn.SiLU, "silu")):
        if isinstance(module, cls):
            return name if type(module).forward is cls.forward else None
    if isinstance(module, torch.nn.GELU) and type(module).forward is torch.nn.GELU.forward:
        return {"none": "gelu", "tanh": "gelu_tanh"}.get(module.approximate)
    return None


# Other names the ecosystem uses for the same functions: timm and apex say "swish", Hugging Face "gelu_new" and
# "gelu_pytorch_tanh" for the tanh approximation (the same formula), and "identity"/"linear" for no activation.
ALIASES: dict[str, str] = {
    "swish": "silu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "identity": "none",
    "linear": "none",
}


def resolve_activation(activation: object) -> str:
    """The op's name for what a user passes as ``activation``: ``None``, a name in any case (``"SiLU"``,
    ``"swish"``, ``"gelu_tanh"``, see :data:`ALIASES`), or a torch module, as a class or an instance
    (``nn.SiLU``, ``nn.GELU(approximate="tanh")``, ``nn.ReLU(inplace=True)``, ``nn.Identity``).

    Anything the op cannot reproduce exactly is refused with an error that names the value.

    Example (the error's list is cut here)::

        >>> from torch import nn
        >>> [resolve_activation(a) for a in (None, "Swish", nn.SiLU, nn.GELU(approximate="tanh"), nn.ReLU())]
        ['none', 'silu', 'silu', 'gelu_tanh', 'relu']
        >>> resolve_activation(nn.LeakyReLU())
        Traceback (most recent call last):
        ...
        ValueError: activation=LeakyReLU(negative_slope=0.01) cannot be fused: the op fuses relu, silu, ...
    """
    if activation is None:
        return "none"
    known = (
        f"the op fuses {', '.join(ACTIVATIONS[1:])} (as names in any case, aliases {', '.join(ALIASES)}, or "
        "nn.ReLU, nn.SiLU, nn.GELU, nn.Identity)"
    )
    if isinstance(activation, str):
        name = activation.strip().lower()
        name = ALIASES.get(name, name)
        if name not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is not an activation the op knows: {known}")
        return name
    if isinstance(activation, type) and issubclass(activation, torch.nn.Module):
        try:
            activation = activation()
        except TypeError:
            raise ValueError(f"activation={activation.__name__} cannot be fused: {known}") from None
    if isinstance(activation, torch.nn.Module):
        name = module_activation_name(activation)
        if name is None:
            if isinstance(activation, torch.nn.GELU):
                raise ValueError(
                    f"activation={activation!r}: nn.GELU's approximate must be 'none' or 'tanh', "
                    f"got approximate={activation.approximate!r}"
                )
            raise ValueError(f"activation={activation!r} cannot be fused: {known}")
        return name
    raise TypeError(
        f"activation must be None, a name or an activation module, got {type(activation).__name__}"
    )


def apply_activation(z: torch.Tensor, activation: str) -> torch.Tensor:
    """``act(z)`` for a canonical activation name (``"none"`` returns ``z``)."""
    return z if activation == "none" else _BY_NAME[activation].forward(z)


def activation_derivative(z: torch.Tensor, activation: str) -> torch.Tensor | None:
    """``act'(z)``, or ``None`` for the identity (so callers can skip a multiply by one)."""
    return None if activation == "none" else _BY_NAME[activation].derivative(z)
