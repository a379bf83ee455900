"""``GroupNorm``: a drop-in for ``torch.nn.GroupNorm`` that runs the fused ``groupnorm`` op.

It subclasses the installed torch's module, so ``isinstance(m, torch.nn.GroupNorm)`` holds (weight-decay filters,
converters and exporters that look for GroupNorm keep working), and it has the same constructor, parameters,
``state_dict`` keys and ``repr``. The additions are keyword-only and show in the ``repr`` only when used.
"""

from __future__ import annotations

import inspect
import numbers

import torch
from torch import nn

from groupnorm.activations import resolve_activation
from groupnorm.functional import group_norm
from groupnorm.layers.grouping import AUTO, auto_num_groups
from groupnorm.ops.checks import resolve_num_groups

# torch added ``bias=`` to nn.GroupNorm after 2.11; on a torch without it this module still accepts ``bias=False``
# (and says so in its repr, which torch's own extra_repr would not).
TORCH_GROUPNORM_HAS_BIAS = "bias" in inspect.signature(nn.GroupNorm.__init__).parameters


def _check_num_channels(num_channels: object) -> int:
    if isinstance(num_channels, bool) or not isinstance(num_channels, int) or num_channels <= 0:
        raise ValueError(f"num_channels must be a positive int, got num_channels={num_channels!r}")
    return num_channels


class GroupNorm(nn.GroupNorm):
    """Group Normalization (Wu & He, 2018) with an optional fused activation, residual and modulation.

    Same arguments as ``torch.nn.GroupNorm`` plus, keyword-only:

    * ``activation`` — ``None`` (default), ``"relu"``, ``"silu"``, ``"gelu"`` or ``"gelu_tanh"`` (any case,
      aliases such as ``"swish"``, or ``nn.SiLU`` / ``nn.GELU(approximate="tanh")`` / ``nn.ReLU``), applied in the
      same kernel as the normalization;
    * ``group_size`` — channels per group, instead of ``num_groups`` (pass ``num_groups=None`` then).

    Without ``num_groups`` and ``group_size`` (or with ``num_groups="auto"``) the group count is the paper's 32
    where the channels allow it (C divisible by 32 and at least 64), else groups of at most 16 channels (the
    :func:`groupnorm.layers.grouping.auto_num_groups` rule), as timm's ``GroupNormAct(num_channels)`` has a default.

    ``forward(x, *, residual=None, scale=None, shift=None)`` returns
    ``act((x_hat * weight + bias) * (1 + scale) + shift + residual)`` with ``scale``/``shift`` of shape (N, C),
    (N, C, 1, ..., 1), (1, C) or (C,) and ``residual`` of x's shape or broadcastable to it.

    Example::

        >>> import torch, groupnorm
        >>> gn = groupnorm.GroupNorm(32, 64, activation="silu")
        >>> y = gn(torch.randn(2, 64, 8, 8))
        >>> gn
        GroupNorm(32, 64, eps=1e-05, affine=True, bias=True, activation='silu')
        >>> groupnorm.GroupNorm(None, 64, group_size=16).num_groups
        4
        >>> groupnorm.GroupNorm(num_channels=256, activation=torch.nn.SiLU).num_groups  # the default grouping
        32
        >>> gn.load_state_dict(torch.nn.GroupNorm(32, 64).state_dict())  # and back
        <All keys matched successfully>
    """

    def __init__(
        self,
        num_groups: int | str | None = None,
        num_channels: int | None = None,
        eps: float = 1e-5,
        affine: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        bias: bool = True,
        activation: str | None = None,
        group_size: int | None = None,
    ) -> None:
        num_channels = _check_num_channels(num_channels)
        if num_groups == AUTO or (num_groups is None and group_size is None):
            # the paper's G = 32 where C allows it (C % 32 == 0 and C >= 64), else groups of at most 16 channels
            num_groups = auto_num_groups(num_channels)
        num_groups = resolve_num_groups(num_channels, num_groups, group_size)
        if not isinstance(eps, numbers.Real) or isinstance(eps, bool) or not eps >= 0:
            raise ValueError(f"eps must be a non-negative number, got eps={eps!r}")
        if TORCH_GROUPNORM_HAS_BIAS:
            super().__init__(num_groups, num_channels, eps, affine, device, dtype, bias=bias)
        else:
            super().__init__(num_groups, num_channels, eps, affine, device, dtype)
            if affine and not bias:
                self.register_parameter("bias", None)
        self.activation = resolve_activation(activation)
        self.group_size = group_size

    def reset_parameters(self) -> None:
        # torch's own version touches ``bias`` unconditionally on torches without ``bias=``
        if self.affine:
            nn.init.ones_(self.weight)
            if self.bias is not None:
                nn.init.zeros_(self.bias)

    def __setattr__(self, name: str, value: object) -> None:
        if (
            name == "activation"
        ):  # nn.Module would register an activation module as a child: resolve it instead
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    @property
    def activation(self) -> str | None:
        """The fused activation, ``None`` for none; assignable (validated)."""
        return self._activation

    @activation.setter
    def activation(self, value: object) -> None:
        name = resolve_activation(value)
        self._activation = None if name == "none" else name

    def forward(
        self,
        input: torch.Tensor,
        *,
        residual: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
        shift: torch.Tensor | None = None,
    ) -> torch.Tensor:
        self._check_channels(input)
        return group_norm(
            input,
            self.num_groups,
            self.weight,
            self.bias,
            self.eps,
            activation=self._activation,
            residual=residual,
            scale=scale,
            shift=shift,
        )

    def _check_channels(self, input: torch.Tensor) -> None:
        """Raise, naming both numbers, when the input's channel dimension is not the module's ``num_channels``.

        Without it the mismatch surfaces as "weight must have shape (96,)", about a tensor the caller never
        passed. Only where the module has parameters (``affine``): without them ``num_channels`` takes no part in
        the computation and torch's own module accepts any channel count, so this one does too.
        """
        if not self.affine:
            return
        if not isinstance(input, torch.Tensor) or input.dim() < 2:
            return  # group_norm says what is wrong with it
        channels = input.shape[1]
        if channels != self.num_channels:
            raise ValueError(
                f"{type(self).__name__}({self.num_groups}, {self.num_channels}) has num_channels="
                f"{self.num_channels}, but the input has {channels} channels: input.shape[1]={channels} "
                f"(input.shape={tuple(input.shape)}); the channel dimension (dim 1) must equal num_channels"
            )

    def extra_repr(self) -> str:
        text = super().extra_repr()
        if not TORCH_GROUPNORM_HAS_BIAS and self.affine and self.bias is None:
            text += ", bias=False"
        if self.group_size is not None:
            text += f", group_size={self.group_size}"
        if self._activation is not None:
            text += f", activation={self._activation!r}"
        return text

    @classmethod
    def from_module(cls, module: nn.GroupNorm, *, activation: str | None = None) -> GroupNorm:
        """A ``GroupNorm`` with ``module``'s configuration and a copy of its parameters (same device, dtype,
        ``requires_grad`` and training mode) — e.g. to move a model's ``torch.nn.GroupNorm`` layers onto the fused
        op (see :func:`groupnorm.convert_norms` with ``source="gn"``).
        """
        if not isinstance(module, nn.GroupNorm):
            raise TypeError(
                f"module must be a torch.nn.GroupNorm, got module of type {type(module).__name__}"
            )
        like = module.weight if module.weight is not None else None
        new = cls(
            module.num_groups,
            module.num_channels,
            module.eps,
            module.affine,
            device=None if like is None else like.device,
            dtype=None if like is None else like.dtype,
            bias=module.bias is not None,
            activation=activation,
        )
        with torch.no_grad():
            for name in ("weight", "bias"):
                src, dst = getattr(module, name), getattr(new, name)
                if src is not None and dst is not None:
                    dst.copy_(src)
                    dst.requires_grad_(src.requires_grad)
        return new.train(module.training)
