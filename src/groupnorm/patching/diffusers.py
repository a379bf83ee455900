"""What ``patch`` knows about diffusers (recognised by class name and module, diffusers itself is never imported).

* ``ResnetBlock2D`` and ``TemporalResnetBlock`` apply one ``nonlinearity`` module three times: after ``norm1``,
  to the time embedding and after ``norm2``. The activation module cannot become the identity, so the block's
  ``forward`` is replaced instead: the block's class becomes a subclass (:mod:`~groupnorm.patching.subclass`:
  same name, same ``repr``, ``isinstance`` still holds, no new state) whose ``forward`` is the installed one with
  the two norms computing the nonlinearity (SiLU, or ReLU/GELU when the block was built with those), and, for
  ``time_embedding_norm="scale_shift"``, ``norm2`` computing ``(x_hat * w + b) * (1 + scale) + shift`` in its
  epilogue. The pre-norm ``+ temb`` of the default mode stays outside. The rewrite is used only when the
  installed ``forward`` reads no name the fused one does not handle (another diffusers version might compute
  something else).
* The encoder's, decoder's and UNets' ``conv_norm_out -> conv_act`` are applied back to back; ``pairs`` fuses them
  once the installed source confirms it.
* Attention and transformer blocks normalize their input and project it; their GroupNorms move onto the fused op
  with no activation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import torch
from torch import nn

from groupnorm.layers.group_norm import GroupNorm
from groupnorm.patching.activations import activation_name
from groupnorm.patching.pairs import PairRule
from groupnorm.patching.report import PatchReport
from groupnorm.patching.subclass import base_class, with_forward

_OUTPUT_NORM = (PairRule("conv_norm_out", "conv_act"),)
PAIR_RULES: dict[str, tuple[PairRule, ...]] = {
    name: _OUTPUT_NORM
    for name in (
        "Encoder",
        "Decoder",
        "MaskConditionDecoder",
        "TemporalDecoder",
        "UNet2DModel",
        "UNet2DConditionModel",
        "UNet3DConditionModel",
        "UNetSpatioTemporalConditionModel",
        "UNetMotionModel",
        "I2VGenXLUNet",
    )
}

# Why a GroupNorm in these places computes no activation (what the installed forward does with its output).
NOTES: dict[tuple[str, str], str] = {
    ("Attention", "group_norm"): "attention input norm: its output goes to the query/key/value projections",
    ("Transformer2DModel", "norm"): "transformer input norm: its output goes to proj_in",
    ("TransformerSpatioTemporalModel", "norm"): "transformer input norm: its output goes to proj_in",
    ("TransformerTemporalModel", "norm"): "transformer input norm: its output goes to proj_in",
    ("SpatialNorm", "norm_layer"): "SpatialNorm: its output is modulated by the latent, then returned",
}


def _scale_shift(temb: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``chunk(temb, 2, dim=1)`` as the op's (N, C) scale and shift, or None when they are not per-(n, c) values
    that broadcast over ``h`` as the stock block's ``h * (1 + scale) + shift`` does (same dtype, too)."""
    n, c = h.shape[0], h.shape[1]
    if (
        temb.dim() != h.dim()
        or temb.shape[1] != 2 * c
        or temb.shape[0] not in (1, n)
        or temb.dtype != h.dtype
    ):
        return None
    if any(size != 1 for size in temb.shape[2:]):
        return None
    scale, shift = torch.chunk(temb.reshape(temb.shape[0], 2 * c), 2, dim=1)
    return scale.expand(n, c), shift.expand(n, c)


def _norm_scale_shift(
    norm: GroupNorm, h: torch.Tensor, temb: torch.Tensor, act: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """``act(norm(h) * (1 + scale) + shift)`` with ``norm`` computing all of it when the shapes allow."""
    modulation = _scale_shift(temb, h)
    if modulation is not None:
        return norm(h, scale=modulation[0], shift=modulation[1])
    # A time embedding the caller passed in any other shape: the stock arithmetic, norm without its activation.
    # The module itself normalizes (a DistributedGroupNorm keeps its whole-image statistics), its fused
    # activation set aside for the one call.
    time_scale, time_shift = torch.chunk(temb, 2, dim=1)
    fused, norm.activation = norm.activation, None
    try:
        plain = norm(h)
    finally:
        norm.activation = fused
    return act(plain * (1 + time_scale) + time_shift)


def _resnet_block_2d_forward(
    self, input_tensor: torch.Tensor, temb: torch.Tensor, *args, **kwargs
) -> torch.Tensor:
    # diffusers' ResnetBlock2D.forward, with norm1 -> nonlinearity and norm2 [-> scale/shift] -> nonlinearity
    # computed by the norms (patch sets their activation to the nonlinearity's).
    if len(args) > 0 or kwargs.get("scale", None) is not None:
        _warn_scale_deprecated(self)
    hidden_states = self.norm1(input_tensor)
    if self.upsample is not None:
        if hidden_states.shape[0] >= 64:  # as in diffusers: upsample_nearest_nhwc fails with large batches
            input_tensor = input_tensor.contiguous()
            hidden_states = hidden_states.contiguous()
        input_tensor = self.upsample(input_tensor)
        hidden_states = self.upsample(hidden_states)
    elif self.downsample is not None:
        input_tensor = self.downsample(input_tensor)
        hidden_states = self.downsample(hidden_states)
    hidden_states = self.conv1(hidden_states)
    if self.time_emb_proj is not None:
        if not self.skip_time_act:
            temb = self.nonlinearity(temb)
        temb = self.time_emb_proj(temb)[:, :, None, None]
    if self.time_embedding_norm == "default":
        if temb is not None:
            hidden_states = hidden_states + temb
        hidden_states = self.norm2(hidden_states)
    elif self.time_embedding_norm == "scale_shift":
        if temb is None:
            raise ValueError(
                f" `temb` should not be None when `time_embedding_norm` is {self.time_embedding_norm}"
            )
        hidden_states = _norm_scale_shift(self.norm2, hidden_states, temb, self.nonlinearity)
    else:
        hidden_states = self.norm2(hidden_states)
    hidden_states = self.dropout(hidden_states)
    hidden_states = self.conv2(hidden_states)
    if self.conv_shortcut is not None:
        if self.training:  # as in diffusers: DDP's gradient strides
            input_tensor = input_tensor.contiguous()
        input_tensor = self.conv_shortcut(input_tensor)
    return (input_tensor + hidden_states) / self.output_scale_factor


def _temporal_resnet_block_forward(self, input_tensor: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
    # diffusers' TemporalResnetBlock.forward, with both norms computing the nonlinearity that follows them.
    hidden_states = self.norm1(input_tensor)
    hidden_states = self.conv1(hidden_states)
    if self.time_emb_proj is not None:
        temb = self.nonlinearity(temb)
        temb = self.time_emb_proj(temb)[:, :, :, None, None]
        temb = temb.permute(0, 2, 1, 3, 4)
        hidden_states = hidden_states + temb
    hidden_states = self.norm2(hidden_states)
    hidden_states = self.dropout(hidden_states)
    hidden_states = self.conv2(hidden_states)
    if self.conv_shortcut is not None:
        input_tensor = self.conv_shortcut(input_tensor)
    return input_tensor + hidden_states


# Per block class: the fused forward and every name the installed forward may read (attributes, globals,
# methods); a forward that reads any other name is another version's and is left alone.
_BLOCKS: dict[str, tuple[Callable[..., torch.Tensor], frozenset[str]]] = {
    "ResnetBlock2D": (
        _resnet_block_2d_forward,
        frozenset(
            "ValueError chunk contiguous conv1 conv2 conv_shortcut deprecate downsample dropout get len "
            "nonlinearity norm1 norm2 output_scale_factor shape skip_time_act time_emb_proj time_embedding_norm "
            "torch training upsample".split()
        ),
    ),
    "TemporalResnetBlock": (
        _temporal_resnet_block_forward,
        frozenset("conv1 conv2 conv_shortcut dropout nonlinearity norm1 norm2 permute time_emb_proj".split()),
    ),
}


def _warn_scale_deprecated(block: nn.Module) -> None:
    # diffusers' own deprecation call, from the module that defines the stock block
    stock = _forward_owner(base_class(type(block)) or type(block))
    deprecate = stock.forward.__globals__.get("deprecate")
    if deprecate is not None:
        deprecate(
            "scale",
            "1.0.0",
            "The `scale` argument is deprecated and will be ignored. Please remove it, as passing it will raise "
            "an error in the future. `scale` should directly be passed while calling the underlying pipeline "
            "component i.e., via `cross_attention_kwargs`.",
        )


def fused_class(cls: type) -> type:
    """The subclass of block class ``cls`` whose ``forward`` is the fused one (one per class, reused)."""
    forward, _ = _BLOCKS[_forward_owner(cls).__name__]
    return with_forward(cls, forward)


def _forward_owner(cls: type) -> type:
    return next(k for k in cls.__mro__ if "forward" in vars(k))


def _is_diffusers(cls: type) -> bool:
    return cls.__module__.split(".")[0] == "diffusers"


def fuse_block(
    block: nn.Module, path: str, uses: Counter[int], report: PatchReport, reasons: dict[int, str]
) -> bool:
    """Give a diffusers ResNet block the fused ``forward`` when it is safe; True when ``block`` is one of the known
    block classes (fused or, with the reasons recorded, not)."""
    cls = type(block)
    owner = _forward_owner(cls)
    if base_class(cls) is not None:
        return True  # patched already
    if owner.__name__ not in _BLOCKS or not _is_diffusers(owner):
        return False
    label = owner.__name__
    norms = [block._modules.get(name) for name in ("norm1", "norm2")]
    if not all(isinstance(n, GroupNorm) and n.activation is None for n in norms):
        return True  # a norm not on the fused op (its reason is recorded where it was left) or fused already
    _, known_names = _BLOCKS[label]
    unknown = sorted(set(owner.forward.__code__.co_names) - known_names)
    nonlinearity = block._modules.get("nonlinearity")
    reason = None
    if unknown:
        reason = f"{label}.forward of this diffusers version reads {', '.join(unknown)}, unknown to the fused forward"
    elif activation_name(nonlinearity) in (None, "none"):
        reason = f"{label}.nonlinearity is {type(nonlinearity).__name__}, which the op has no fused form of"
    elif "forward" in vars(block):
        reason = f"{label}'s forward is replaced on the instance (hooks?), so what runs is not known"
    elif (
        nonlinearity._forward_hooks or nonlinearity._forward_pre_hooks or any(uses[id(n)] > 1 for n in norms)
    ):
        reason = f"{label}'s nonlinearity has hooks or its norms are shared with another part of the model"
    if reason is not None:
        for norm in norms:
            reasons.setdefault(id(norm), reason)
        return True
    block.__class__ = fused_class(cls)
    prefix = f"{path}." if path else ""
    scale_shift = getattr(block, "time_embedding_norm", None) == "scale_shift"
    activation = activation_name(nonlinearity)
    for name, norm in zip(("norm1", "norm2"), norms):
        norm.activation = activation
        how = f"{label}, scale/shift in the epilogue" if name == "norm2" and scale_shift else label
        report.fused.append((prefix + name, prefix + "nonlinearity", activation, how))
    return True
