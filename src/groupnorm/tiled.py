"""Tiled VAE decoding whose GroupNorms use the statistics of the whole image.

Decoding a large latent tile by tile and normalizing each tile with its own statistics (what tiled decoders
usually do) gives seams and colour shifts between tiles. :func:`tiled_decode` decodes a diffusers
``AutoencoderKL`` latent tile by tile and gives, up to float rounding, the untiled decode's result.

Order: the decoder runs layer by layer over all tiles. The latent is cut into a grid of non-overlapping tiles;

* a convolution runs on each tile extended by a halo of ``kernel // 2`` pixels copied from its neighbours (zeros
  at the image border, as the convolution's own padding), so it sees exactly what it sees in the whole image;
* a GroupNorm takes every tile's :func:`groupnorm.group_stats`, merges them (Chan's formula, tiles in row-major
  order) and normalizes each tile with the merged statistics (:func:`groupnorm.group_norm` with ``stats=``),
  fusing the SiLU that follows;
* nearest-neighbour upsampling runs on each tile (it is local); the grid's boundaries double;
* the mid-block attention, which is global, runs once on the assembled latent-resolution activation, as in the
  untiled decode (its GroupNorm included), and its output is cut into the grid again.

Memory: every tile of the current layer is kept, so about one whole activation at each depth (two inside a
residual block: its input and the branch), plus one tile's temporaries (halo copy, convolution workspace) and
the attention of the untiled decode at latent resolution. It saves the untiled decode's full-size temporaries
and workspaces, not the activations themselves. To hold only a part of each activation, split the image over
devices with :class:`groupnorm.DistributedGroupNorm` instead.

Supported: decoders of ``Conv2d``, ``GroupNorm``, ``ResnetBlock2D`` (no time embedding), ``UNetMidBlock2D``,
``UpDecoderBlock2D`` and ``Upsample2D`` (interpolating), the blocks diffusers builds an ``AutoencoderKL`` decoder
from. Anything else raises a ``TypeError`` that names the module; nothing from diffusers is imported.

Example::

    >>> import torch, groupnorm
    >>> from diffusers import AutoencoderKL  # doctest: +SKIP
    >>> vae = AutoencoderKL.from_pretrained("stabilityai/sd-vae-ft-mse").eval()  # doctest: +SKIP
    >>> with torch.no_grad():  # doctest: +SKIP
    ...     image = groupnorm.tiled_decode(vae, latents / vae.config.scaling_factor, tile_size=64)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from groupnorm.activations import module_activation_name
from groupnorm.functional import group_norm
from groupnorm.stats import GroupStats, group_stats

__all__ = ["TileGrid", "tiled_decode"]


def _boundaries(length: int, tile: int) -> tuple[int, ...]:
    """Cuts of ``range(length)`` into ceil(length / tile) nearly equal pieces."""
    count = max(1, -(-length // tile))
    return tuple(round(k * length / count) for k in range(count + 1))


@dataclass
class TileGrid:
    """An (N, C, H, W) activation kept as a grid of non-overlapping tiles.

    ``rows`` and ``cols`` are the cut positions (``rows[0] == 0``, ``rows[-1] == H``); ``tiles[i][j]`` holds rows
    ``rows[i]:rows[i + 1]`` and columns ``cols[j]:cols[j + 1]``.
    """

    rows: tuple[int, ...]
    cols: tuple[int, ...]
    tiles: list[list[Tensor]]

    @classmethod
    def split(cls, x: Tensor, rows: tuple[int, ...], cols: tuple[int, ...]) -> TileGrid:
        tiles = [[x[:, :, r0:r1, c0:c1] for c0, c1 in zip(cols, cols[1:])] for r0, r1 in zip(rows, rows[1:])]
        return cls(rows, cols, tiles)

    def map(self, fn: Callable[[Tensor], Tensor]) -> TileGrid:
        return TileGrid(self.rows, self.cols, [[fn(t) for t in row] for row in self.tiles])

    def flat(self) -> list[Tensor]:
        """The tiles in row-major order (the order statistics are merged in)."""
        return [t for row in self.tiles for t in row]

    def assemble(self) -> Tensor:
        return torch.cat([torch.cat(row, dim=3) for row in self.tiles], dim=2)

    def window(self, i: int, j: int, halo: tuple[int, int]) -> Tensor:
        """Tile (i, j) extended by ``halo`` (rows, columns) pixels of its neighbours, zeros outside the image."""
        ph, pw = halo
        center = self.tiles[i][j]
        if ph == 0 and pw == 0:
            return center
        top, bottom = self.rows[i] - ph, self.rows[i + 1] + ph
        left, right = self.cols[j] - pw, self.cols[j + 1] + pw
        n, c = center.shape[:2]
        out = center.new_zeros((n, c, bottom - top, right - left))
        for a, (r0, r1) in enumerate(zip(self.rows, self.rows[1:])):
            y0, y1 = max(r0, top), min(r1, bottom)
            if y0 >= y1:
                continue
            for b, (c0, c1) in enumerate(zip(self.cols, self.cols[1:])):
                x0, x1 = max(c0, left), min(c1, right)
                if x0 < x1:
                    src = self.tiles[a][b][:, :, y0 - r0 : y1 - r0, x0 - c0 : x1 - c0]
                    out[:, :, y0 - top : y1 - top, x0 - left : x1 - left] = src
        return out


def _unsupported(module: nn.Module, what: str) -> TypeError:
    return TypeError(f"tiled_decode cannot run {type(module).__name__} tile by tile: {what}")


def _conv(grid: TileGrid, conv: nn.Module) -> TileGrid:
    if not isinstance(conv, nn.Conv2d):
        raise _unsupported(conv, "expected an nn.Conv2d")
    kh, kw = conv.kernel_size
    if (
        conv.stride != (1, 1)
        or conv.dilation != (1, 1)
        or conv.padding_mode != "zeros"
        or conv.padding != (kh // 2, kw // 2)
        or kh % 2 == 0
        or kw % 2 == 0
    ):
        raise _unsupported(
            conv,
            f"only stride 1 'same' convolutions with odd kernels, got kernel_size={conv.kernel_size}, "
            f"stride={conv.stride}, padding={conv.padding}, dilation={conv.dilation}",
        )
    halo = (kh // 2, kw // 2)
    tiles = [
        [
            F.conv2d(grid.window(i, j, halo), conv.weight, conv.bias, groups=conv.groups)
            for j in range(len(grid.cols) - 1)
        ]
        for i in range(len(grid.rows) - 1)
    ]
    return TileGrid(grid.rows, grid.cols, tiles)


def _activation_name(module: nn.Module | None) -> str | None:
    name = None if module is None else module_activation_name(module)
    return None if name == "none" else name


def _group_norm(grid: TileGrid, norm: nn.Module, activation: nn.Module | None = None) -> TileGrid:
    """GroupNorm with the whole grid's statistics (and its own fused activation, for a :class:`groupnorm.GroupNorm`),
    followed by ``activation`` (fused into the same call when the norm has none of its own and the op has it)."""
    if not isinstance(norm, nn.GroupNorm):
        raise _unsupported(norm, "expected a GroupNorm")
    stats = GroupStats.merge(*(group_stats(t, norm.num_groups) for t in grid.flat()))
    fused = getattr(norm, "activation", None)
    after = None if activation is None or isinstance(activation, nn.Identity) else activation
    if fused is None and after is not None and _activation_name(after) is not None:
        fused, after = _activation_name(after), None
    out = grid.map(
        lambda t: group_norm(
            t, norm.num_groups, norm.weight, norm.bias, norm.eps, stats=stats, activation=fused
        )
    )
    return out if after is None else out.map(after)


def _nonlinearity_after_norms(block: nn.Module) -> nn.Module | None:
    """The activation a residual block applies after each norm: diffusers' forward applies ``nonlinearity``;
    :func:`groupnorm.patch`'s rewrite of it has the norms compute their SiLU themselves (``norm.activation``)."""
    if type(block).forward.__module__.split(".")[0] == "diffusers":
        return block.nonlinearity
    if getattr(block.norm1, "activation", None) is not None and getattr(block.norm2, "activation", None):
        return None
    raise _unsupported(block, f"its forward comes from {type(block).forward.__module__}, not diffusers")


def _resnet(grid: TileGrid, block: nn.Module) -> TileGrid:
    if type(block).__name__ != "ResnetBlock2D":
        raise _unsupported(block, "expected a ResnetBlock2D")
    if block.upsample is not None or block.downsample is not None or block.time_emb_proj is not None:
        raise _unsupported(block, "resampling or time-embedding residual blocks are not supported")
    # without a time embedding, "default" and "group" both mean norm2 alone
    if getattr(block, "time_embedding_norm", "default") not in ("default", "group"):
        raise _unsupported(block, f"time_embedding_norm={block.time_embedding_norm!r} is not supported")
    act = _nonlinearity_after_norms(block)
    h = _group_norm(grid, block.norm1, act)
    h = _conv(h, block.conv1)
    h = _group_norm(h, block.norm2, act)
    h = _conv(h.map(block.dropout), block.conv2)
    shortcut = grid if block.conv_shortcut is None else _conv(grid, block.conv_shortcut)
    scale = block.output_scale_factor
    tiles = [[(s + t) / scale for s, t in zip(srow, trow)] for srow, trow in zip(shortcut.tiles, h.tiles)]
    return TileGrid(grid.rows, grid.cols, tiles)


def _attention(grid: TileGrid, attn: nn.Module) -> TileGrid:
    # global over all positions: run once on the whole (latent-resolution) activation
    return TileGrid.split(attn(grid.assemble()), grid.rows, grid.cols)


def _mid_block(grid: TileGrid, block: nn.Module) -> TileGrid:
    if type(block).__name__ != "UNetMidBlock2D":
        raise _unsupported(block, "expected a UNetMidBlock2D")
    grid = _resnet(grid, block.resnets[0])
    for attn, resnet in zip(block.attentions, block.resnets[1:]):
        if attn is not None:
            grid = _attention(grid, attn)
        grid = _resnet(grid, resnet)
    return grid


def _upsample(grid: TileGrid, upsampler: nn.Module) -> TileGrid:
    if type(upsampler).__name__ != "Upsample2D":
        raise _unsupported(upsampler, "expected an Upsample2D")
    if upsampler.use_conv_transpose or not upsampler.interpolate or upsampler.norm is not None:
        raise _unsupported(upsampler, "only nearest-neighbour interpolation (no transposed conv, no norm)")
    # nearest-neighbour doubling is local: each tile's doubling is its part of the whole's
    grid = TileGrid(
        tuple(2 * r for r in grid.rows),
        tuple(2 * c for c in grid.cols),
        [[F.interpolate(t, scale_factor=2.0, mode="nearest") for t in row] for row in grid.tiles],
    )
    if upsampler.use_conv:
        grid = _conv(grid, upsampler.conv if upsampler.name == "conv" else upsampler.Conv2d_0)
    return grid


def _decoder(grid: TileGrid, decoder: nn.Module) -> TileGrid:
    grid = _conv(grid, decoder.conv_in)
    grid = _mid_block(grid, decoder.mid_block)
    dtype = next(iter(decoder.up_blocks.parameters())).dtype
    grid = grid.map(lambda t: t.to(dtype))  # as the decoder does when its up blocks run in another dtype
    for up in decoder.up_blocks:
        if type(up).__name__ != "UpDecoderBlock2D":
            raise _unsupported(up, "expected an UpDecoderBlock2D")
        for resnet in up.resnets:
            grid = _resnet(grid, resnet)
        for upsampler in up.upsamplers or ():
            grid = _upsample(grid, upsampler)
    grid = _group_norm(grid, decoder.conv_norm_out, decoder.conv_act)
    return _conv(grid, decoder.conv_out)


def tiled_decode(vae: nn.Module, latents: Tensor, tile_size: int | tuple[int, int] = 64) -> Tensor:
    """Decode ``latents`` (N, C, h, w) with ``vae`` (a diffusers ``AutoencoderKL``, or its ``decoder``) tile by
    tile, every GroupNorm using the statistics of the whole image; returns what ``vae.decode(latents).sample``
    returns, up to float rounding.

    ``tile_size`` is in latent pixels (an int, or (height, width)); the latent is cut into ceil(h / tile) x
    ceil(w / tile) nearly equal tiles. See the module docstring for the order of the computation and its memory.
    Runs in the caller's grad mode (under ``torch.no_grad()`` for inference; gradients are exact otherwise).

    Example: a random-init VAE (with ``diffusers`` installed)::

        >>> import torch, groupnorm
        >>> from diffusers import AutoencoderKL  # doctest: +SKIP
        >>> vae = AutoencoderKL(block_out_channels=(32, 64), norm_num_groups=8,  # doctest: +SKIP
        ...                     down_block_types=("DownEncoderBlock2D",) * 2,
        ...                     up_block_types=("UpDecoderBlock2D",) * 2).eval()
        >>> z = torch.randn(1, 4, 24, 40)
        >>> with torch.no_grad():  # doctest: +SKIP
        ...     err = (groupnorm.tiled_decode(vae, z, tile_size=8) - vae.decode(z).sample).abs().max()
    """
    decoder = getattr(vae, "decoder", vae)
    post_quant_conv = getattr(vae, "post_quant_conv", None)
    if not isinstance(latents, Tensor) or latents.dim() != 4:
        shape = tuple(latents.shape) if isinstance(latents, Tensor) else type(latents).__name__
        raise ValueError(f"latents must be a Tensor of shape (N, C, h, w), got latents of shape {shape}")
    sizes = (tile_size, tile_size) if isinstance(tile_size, int) else tuple(tile_size)
    if len(sizes) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes):
        raise ValueError(
            f"tile_size must be a positive int or a (height, width) pair of them, got {tile_size!r}"
        )
    for name in ("conv_in", "mid_block", "up_blocks", "conv_norm_out", "conv_act", "conv_out"):
        if not hasattr(decoder, name):
            raise TypeError(
                f"vae must be a diffusers AutoencoderKL or its Decoder, got {type(vae).__name__} without {name}"
            )
    h, w = latents.shape[-2:]
    grid = TileGrid.split(latents, _boundaries(h, sizes[0]), _boundaries(w, sizes[1]))
    if post_quant_conv is not None:
        grid = _conv(grid, post_quant_conv)
    return _decoder(grid, decoder).assemble()
