"""``DistributedGroupNorm``: Group Normalization of images split spatially over the ranks of a process group.

Patch-parallel inference and training (a high-resolution VAE decode, a video model) give each rank a spatial slice
of the same images. Normalizing a slice with its own statistics changes the result (seams, colour shifts between
slices); this layer normalizes every slice with the statistics of the whole image, so the slices together compute
exactly what :class:`groupnorm.GroupNorm` computes on the whole image on one device, forward and backward.

Per forward, one collective: every rank's (count, mean, M2) per (sample, group) is all-gathered (in float64) and
merged with Chan's formula in rank order, so every rank gets the same bits, run after run. Per backward, one
collective: the two per-group gradient sums (of ``g`` and ``g * x_hat``, ``g`` the gradient reaching x_hat) are
all-gathered and added in rank order; each rank then finishes its own input gradient. The parameter gradients
are each rank's share; DistributedDataParallel averages them, as it does every gradient, so with DDP the
gradients are those of the mean of the ranks' losses (the same convention as ``torch.nn.SyncBatchNorm``).

The ranks must agree on N, C and G (each holds part of the same images) and call the layers in the same order.
Each collective message starts with the sender's (N, C, G), so a rank whose input disagrees makes every rank raise
a ``ValueError`` naming the values instead of a collective mismatch. The first forward of a layer, and the first
after its input shape changes on all ranks, costs one more (small) collective that agrees on the new shape.

What runs: the normalization and its backward in plain torch ops in the accumulation dtype (float32, float64 for
float64 inputs); gloo (CPU) and nccl (CUDA) alike. Double backward is not supported.

Patch-parallel VAE decode, one image row band per rank (run with ``torchrun --nproc_per_node P script.py``)::

    import torch, torch.distributed as dist, groupnorm
    from diffusers import AutoencoderKL

    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    vae = AutoencoderKL.from_pretrained(...).cuda().eval()
    vae.decoder = groupnorm.convert_norms(vae.decoder, source="gn", process_group=dist.group.WORLD)

    # every rank takes its rows of the latent plus a halo for the convolutions' receptive field, decodes them
    # (GroupNorm statistics now cover the whole image), and keeps the rows that belong to it. The mid-block
    # attention is global: give it the whole latent, or accept its local approximation.

Example (the layer is built like GroupNorm; it needs a process group only when called)::

    >>> import torch, groupnorm
    >>> norm = groupnorm.DistributedGroupNorm(4, 8, activation="silu")
    >>> norm
    DistributedGroupNorm(4, 8, eps=1e-05, affine=True, bias=True, activation='silu')
    >>> sorted(norm.state_dict()) == sorted(torch.nn.GroupNorm(4, 8).state_dict())
    True
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
from torch import Tensor, nn

from groupnorm.activations import canonical_activation
from groupnorm.layers.group_norm import GroupNorm
from groupnorm.ops.checks import check_forward_args
from groupnorm.stats import (
    BackwardSums,
    GroupStats,
    epilogue_backward,
    epilogue_output,
    group_stats,
    input_gradient,
    local_sums,
)

_HEADER = 3  # (N, C, G) at the start of every message
_FIELDS = ("N (the batch size)", "C (the channel count)", "G (the group count)")


def resolve_process_group(process_group: object | None) -> object | None:
    """``process_group`` (``None``: the default group) once ``torch.distributed`` is initialized, else an error."""
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "DistributedGroupNorm needs an initialized torch.distributed process group: call "
            "torch.distributed.init_process_group(...) first "
            f"(got process_group={process_group!r} and no initialized default group)"
        )
    return process_group


class StatsExchange:
    """The collectives of one layer: statistics in the forward, gradient sums in the backward.

    Keeps the (N, C, G) all ranks last agreed on. A message always has the size that agreed shape gives, whatever
    the sender's input, so the collective never mismatches; a rank whose shape changed sends its new header with
    an empty body, every rank sees the disagreement (or the agreement on a new shape) and all act alike.
    """

    def __init__(self) -> None:
        self.agreed: tuple[int, int, int] | None = None

    def _gather(self, message: Tensor, group: object | None) -> list[Tensor]:
        out = [torch.empty_like(message) for _ in range(dist.get_world_size(group))]
        dist.all_gather(out, message, group=group)
        return out

    def merged_stats(self, local: GroupStats, num_channels: int, group: object | None) -> GroupStats:
        """The statistics of all ranks' parts, merged in rank order (one collective once the shape is agreed)."""
        n, g = local.shape
        shape = (n, num_channels, g)
        header = torch.tensor(shape, dtype=torch.float64, device=local.device)
        body = torch.stack([local.count, local.mean, local.m2]).to(torch.float64).flatten()
        if self.agreed == shape:
            gathered = self._gather(torch.cat([header, body]), group)
        else:
            size = 0 if self.agreed is None else 3 * self.agreed[0] * self.agreed[2]
            gathered = self._gather(torch.cat([header, body.new_zeros(size)]), group)
        _check_headers([m[:_HEADER] for m in gathered], shape, group)
        if self.agreed != shape:  # every rank has the same new shape: agree on it and gather the statistics
            self.agreed = shape
            gathered = self._gather(torch.cat([header, body]), group)
        parts = [GroupStats(*m[_HEADER:].view(3, n, g).unbind(0)) for m in gathered]
        merged = GroupStats.merge(*parts)
        return GroupStats(*(t.to(local.dtype) for t in (merged.count, merged.mean, merged.m2)))

    def summed_gradients(self, local: BackwardSums, group: object | None) -> BackwardSums:
        """The gradient sums of all ranks, added in rank order (one collective; the shape was agreed forward)."""
        dtype = local.sum_dy_gamma.dtype
        message = torch.stack(list(local)).to(torch.float64).flatten()
        gathered = [m.view(2, *local.sum_dy_gamma.shape) for m in self._gather(message, group)]
        total = BackwardSums(*gathered[0].unbind(0)).merge(
            *(BackwardSums(*m.unbind(0)) for m in gathered[1:])
        )
        return BackwardSums(*(t.to(dtype) for t in total))


def _check_headers(headers: list[Tensor], own: tuple[int, int, int], group: object | None) -> None:
    shapes = [tuple(int(v) for v in h.tolist()) for h in headers]
    for field, name in enumerate(_FIELDS):
        values = [s[field] for s in shapes]
        if len(set(values)) > 1:
            letter = name[0]
            listing = ", ".join(f"rank {r} has {letter}={v}" for r, v in enumerate(values))
            raise ValueError(
                f"DistributedGroupNorm: the ranks' parts disagree on {name}: {listing} "
                f"(this rank, {dist.get_rank(group)}, has {letter}={own[field]}); every rank must hold a spatial "
                "part of the same images"
            )


class _DistributedGroupNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, residual, scale, shift, num_groups, eps, activation, exchange, group):
        merged = exchange.merged_stats(group_stats(x, num_groups), x.shape[1], group)
        rstd = merged.rstd(eps)
        y = epilogue_output(
            x, merged.mean, rstd, num_groups, weight, bias, activation, residual, scale, shift
        )
        ctx.save_for_backward(x, weight, bias, residual, scale, shift, merged.mean, rstd, merged.count)
        ctx.num_groups, ctx.activation, ctx.exchange, ctx.group = num_groups, activation, exchange, group
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, weight, bias, residual, scale, shift, mean, rstd, count = ctx.saved_tensors
        grad_xhat, xhat, grads = epilogue_backward(
            grad_y, x, mean, rstd, ctx.num_groups, weight, bias, ctx.activation, residual, scale, shift
        )
        needs = ctx.needs_input_grad
        dx = None
        if needs[0]:
            sums = ctx.exchange.summed_gradients(local_sums(grad_xhat, xhat), ctx.group)
            dx = input_gradient(grad_xhat, xhat, rstd, count, sums, x)
        wanted = [g if need else None for g, need in zip(grads[1:], needs[1:6])]
        return (dx, *wanted, None, None, None, None, None)


class DistributedGroupNorm(GroupNorm):
    """:class:`groupnorm.GroupNorm` for inputs split spatially over the ranks of a ``torch.distributed`` group.

    Same arguments, parameters, ``state_dict`` and ``forward(x, *, residual=None, scale=None, shift=None)`` as
    :class:`groupnorm.GroupNorm`, plus ``process_group`` (``None``: the default group, looked up at each forward,
    so the layer can be built before ``init_process_group``). Each rank passes its spatial part of the same
    images; the output is that part of what GroupNorm gives on the whole images. See the module docstring for the
    collectives, their cost, and a patch-parallel decode. ``groupnorm.convert_norms(model, source="gn",
    process_group=group)`` turns a model's GroupNorms into these layers.

    Example::

        >>> import torch, groupnorm
        >>> norm = groupnorm.DistributedGroupNorm(32, 64, process_group=None)
        >>> norm.load_state_dict(torch.nn.GroupNorm(32, 64).state_dict())
        <All keys matched successfully>
    """

    def __init__(
        self,
        num_groups: int | None,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        bias: bool = True,
        activation: str | None = None,
        group_size: int | None = None,
        process_group: object | None = None,
    ) -> None:
        super().__init__(
            num_groups,
            num_channels,
            eps,
            affine,
            device,
            dtype,
            bias=bias,
            activation=activation,
            group_size=group_size,
        )
        self.process_group = process_group
        self._exchange = StatsExchange()

    def forward(
        self,
        input: Tensor,
        *,
        residual: Tensor | None = None,
        scale: Tensor | None = None,
        shift: Tensor | None = None,
    ) -> Tensor:
        self._check_channels(input)
        group = resolve_process_group(self.process_group)
        activation = canonical_activation(self._activation)
        eps = float(self.eps)
        check_forward_args(
            input, self.weight, self.bias, self.num_groups, eps, activation, residual, scale, shift
        )
        return _DistributedGroupNormFunction.apply(
            input,
            self.weight,
            self.bias,
            residual,
            scale,
            shift,
            self.num_groups,
            eps,
            activation,
            self._exchange,
            group,
        )

    def __deepcopy__(self, memo: dict) -> DistributedGroupNorm:
        # A process group is a communicator, not data, and cannot be copied: a copy of the model (an EMA model,
        # say) shares it.
        if self.process_group is not None:
            memo[id(self.process_group)] = self.process_group
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__setstate__(copy.deepcopy(self.__dict__, memo))
        return new

    @classmethod
    def from_module(
        cls,
        module: nn.GroupNorm,
        *,
        activation: str | None = None,
        process_group: object | None = None,
    ) -> DistributedGroupNorm:
        """A ``DistributedGroupNorm`` with ``module``'s configuration, parameters (copied) and fused activation
        (a :class:`groupnorm.GroupNorm`'s, unless ``activation`` is given)."""
        if activation is None:
            activation = getattr(module, "activation", None)
        new = super().from_module(module, activation=activation)
        new.process_group = process_group
        return new
