"""Batched, counter-based augmentation: every random choice is a pure function of (seed, epoch, sample index).

Any split of the work (one process, K virtual devices, several torchrun processes, a resumed run) therefore
draws exactly the same crops and flips for the same sample, with no generator state to carry or checkpoint.
All of it runs as a few tensor ops over the whole batch: no per-image Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_MASK31 = 0x7FFFFFFF
# Odd 31-bit multipliers (from murmur/xxhash). Inputs stay below 2**31, so products stay below 2**62 and
# int64 arithmetic never overflows: the hash is identical on every platform and device.
_MULTIPLIERS = (0x5BD1E995, 0x27D4EB2D, 0x165667B1)


def _hash31(x: torch.Tensor) -> torch.Tensor:
    for c in _MULTIPLIERS:
        x = ((x ^ (x >> 15)) * c) & _MASK31
    return x ^ (x >> 13)


def uniform(seed: int, epoch: int, index: torch.Tensor, stream: int) -> torch.Tensor:
    """Uniform floats in [0, 1), one per entry of ``index``, determined by (seed, epoch, index, stream).

    >>> a = uniform(0, 1, torch.arange(4), stream=0)
    >>> bool((a == uniform(0, 1, torch.arange(4), stream=0)).all())
    True
    """
    base = torch.tensor(seed & _MASK31, dtype=torch.int64)
    h = _hash31(base)
    h = _hash31(h ^ (epoch & _MASK31))
    h = _hash31(h ^ (stream * 0x9E3779B1 & _MASK31))
    h = _hash31(h ^ (index.to(torch.int64) & _MASK31))
    return h.to(torch.float64).div(2**31).to(torch.float32)


@dataclass(frozen=True)
class Augment:
    """The training augmentation of a dataset: a random translation by up to ``pad`` pixels (zero padding,
    the CIFAR "pad 4, crop 32" recipe) and an optional horizontal flip. ``pad=0, flip=False`` is no augmentation.
    """

    pad: int = 0
    flip: bool = False

    def __call__(self, images: torch.Tensor, index: torch.Tensor, seed: int, epoch: int) -> torch.Tensor:
        """Augment a batch ``images`` (B, C, H, W) whose dataset indices are ``index`` (B,)."""
        if self.pad == 0 and not self.flip:
            return images
        b, _, h, w = images.shape
        out = images
        if self.pad > 0:
            p = self.pad
            span = 2 * p + 1
            dy = (uniform(seed, epoch, index, 0) * span).long().clamp_max(span - 1)
            dx = (uniform(seed, epoch, index, 1) * span).long().clamp_max(span - 1)
            padded = torch.nn.functional.pad(out, (p, p, p, p))
            rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (B, H, 1)
            cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (B, 1, W)
            # Advanced indexing gathers every image's own window at once: result (B, H, W, C).
            out = padded.permute(0, 2, 3, 1)[torch.arange(b)[:, None, None], rows, cols].permute(0, 3, 1, 2)
        if self.flip:
            flip = uniform(seed, epoch, index, 2) < 0.5
            out = torch.where(flip[:, None, None, None], out.flip(-1), out)
        return out.contiguous()
