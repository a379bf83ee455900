"""Object masks and textures drawn from a seed: the pieces the generated scene and clip data sets paste together.

``shape_mask(kind, side, g)`` is one of :data:`SHAPES` (the class of a generated object) at a random rotation;
``blob_mask(side, g)`` is a random smooth blob, the outline through which a CIFAR-10 image is pasted, so that an
object's mask follows its outline rather than its box. Everything is a function of the generator's state.

>>> g = torch.Generator().manual_seed(0)
>>> m = shape_mask("triangle", 16, g)
>>> m.shape, m.dtype, 0 < int(m.sum()) < 16 * 16
(torch.Size([16, 16]), torch.bool, True)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SHAPES: tuple[str, ...] = ("disk", "triangle", "square", "cross", "ring", "star")


def _grid(side: int, angle: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates in [-1, 1], rotated by ``angle``."""
    t = (torch.arange(side, dtype=torch.float32) + 0.5) / side * 2 - 1
    y, x = torch.meshgrid(t, t, indexing="ij")
    c, s = math.cos(angle), math.sin(angle)
    return c * x + s * y, -s * x + c * y


def shape_mask(kind: str, side: int, g: torch.Generator) -> torch.Tensor:
    """A (side, side) bool mask of shape ``kind`` (one of :data:`SHAPES`), randomly rotated."""
    if kind not in SHAPES:
        raise ValueError(f"kind: unknown shape {kind!r}; choose from {', '.join(SHAPES)}")
    if side < 4:
        raise ValueError(f"side must be >= 4 pixels, got {side}")
    x, y = _grid(side, float(torch.rand((), generator=g)) * 2 * math.pi)
    r = torch.sqrt(x * x + y * y)
    if kind == "disk":
        return r <= 0.9
    if kind == "ring":
        return (r <= 0.95) & (r >= 0.5)
    if kind == "square":
        return (x.abs() <= 0.65) & (y.abs() <= 0.65)
    if kind == "cross":
        return ((x.abs() <= 0.3) & (y.abs() <= 0.9)) | ((y.abs() <= 0.3) & (x.abs() <= 0.9))
    theta = torch.atan2(y, x)
    if kind == "triangle":  # inside all three edges of an equilateral triangle of circumradius 0.95
        inside = torch.ones_like(r, dtype=torch.bool)
        for k in range(3):
            a = 2 * math.pi * k / 3
            inside &= x * math.cos(a) + y * math.sin(a) <= 0.475
        return inside
    return r <= 0.45 + 0.45 * torch.cos(5 * theta).clamp_min(0) ** 2  # star: five points


def blob_mask(side: int, g: torch.Generator) -> torch.Tensor:
    """A random smooth blob: a radius that varies with the angle by a few low harmonics."""
    if side < 4:
        raise ValueError(f"side must be >= 4 pixels, got {side}")
    x, y = _grid(side, 0.0)
    r, theta = torch.sqrt(x * x + y * y), torch.atan2(y, x)
    coef = torch.rand(3, 2, generator=g)
    radius = 0.7 + sum(
        0.12 * coef[k, 0] * torch.cos((k + 2) * theta + 2 * math.pi * coef[k, 1]) for k in range(3)
    )
    return r <= radius


def texture(side: int, g: torch.Generator) -> torch.Tensor:
    """A (3, side, side) uint8 patch: a random colour with a smooth brightness pattern and noise."""
    colour = 60 + 180 * torch.rand(3, 1, 1, generator=g)
    low = F.interpolate(torch.rand(1, 1, 3, 3, generator=g), size=(side, side), mode="bilinear")[0]
    noise = 20 * torch.rand(1, side, side, generator=g)
    return (colour * (0.7 + 0.3 * low) + noise).clamp(0, 255).to(torch.uint8)


def resize_patch(patch: torch.Tensor, side: int) -> torch.Tensor:
    """A (C, h, w) uint8 patch resized to (C, side, side) (bilinear, antialiased)."""
    out = F.interpolate(patch[None].float(), size=(side, side), mode="bilinear", antialias=True)
    return out[0].round().clamp(0, 255).to(torch.uint8)
