"""A generated clip data set whose class depends on motion as well as appearance.

Each clip shows one object of a shape in :data:`APPEARANCES` moving in a straight line in one of
:data:`MOTIONS` (right, left, down, up) over a noisy background, beside a static distractor of a random shape;
the class is (shape, direction). Start positions are drawn so that a rightward and a leftward clip cover the same
positions: a model that averages the frames sees the same streak for both, and cannot tell them apart better than
chance between those pairs. The path length is the same for any number of frames (a longer clip moves slower).
Deterministic by (seed, split, index).

Spec: ``moving[:key=value,...]`` with ``train``, ``test`` (clip counts), ``size`` (frame side), ``seed``; the
number of frames comes from the run.

>>> data = load_moving("train=8,test=8,size=24", frames=4)
>>> data.train_clips.shape, len(data.classes)
(torch.Size([8, 3, 4, 24, 24]), 8)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from groupnorm.repro.detection.scenes import parse_options
from groupnorm.repro.shapes import shape_mask, texture
from groupnorm.repro.video.data import ClipData

APPEARANCES: tuple[str, ...] = ("disk", "cross")
MOTIONS: tuple[str, ...] = ("right", "left", "down", "up")
DEFAULTS = {"train": 4000, "test": 800, "size": 32, "seed": 0}


def object_side(size: int) -> int:
    return max(4, size * 3 // 8)


def track(g: torch.Generator, frames: int, size: int, motion: str) -> list[tuple[int, int]]:
    """The moving object's top-left corner (y, x) in each frame. Leftward (upward) tracks are rightward
    (downward) ones mirrored in space, not in time, so both visit the same distribution of positions."""
    travel = size - object_side(size)  # along the motion axis, from one edge towards the other
    length = int(travel * (0.5 + 0.5 * float(torch.rand((), generator=g))))
    start = int(torch.randint(0, travel - length + 1, (), generator=g))
    across = int(torch.randint(0, travel + 1, (), generator=g))
    out = []
    for t in range(frames):
        along = start + round(length * t / max(1, frames - 1))
        if motion in ("left", "up"):
            along = travel - along
        out.append((along, across) if motion in ("down", "up") else (across, along))
    return out


def _clip(g: torch.Generator, frames: int, size: int, label: int) -> torch.Tensor:
    shape, motion = APPEARANCES[label // len(MOTIONS)], MOTIONS[label % len(MOTIONS)]
    low = F.interpolate(torch.rand(1, 3, 4, 4, generator=g), size=(size, size), mode="bilinear")[0]
    background = 50 + 60 * low
    side = object_side(size)
    path = track(g, frames, size, motion)
    patch, mask = texture(side, g), shape_mask(shape, side, g)
    d_side = max(4, size // 4)
    d_kind = APPEARANCES[int(torch.randint(len(APPEARANCES), (), generator=g))]
    d_patch, d_mask = texture(d_side, g), shape_mask(d_kind, d_side, g)
    dy, dx = (int(torch.randint(0, size - d_side + 1, (), generator=g)) for _ in range(2))
    clip = torch.empty(3, frames, size, size)
    for t in range(frames):
        frame = background + 25 * torch.rand(3, size, size, generator=g)
        frame[:, dy : dy + d_side, dx : dx + d_side][:, d_mask] = d_patch[:, d_mask].float()
        y, x = path[t]
        frame[:, y : y + side, x : x + side][:, mask] = patch[:, mask].float()
        clip[:, t] = frame
    return clip.clamp(0, 255).to(torch.uint8)


def _split(n: int, frames: int, size: int, seed: int, split: int) -> tuple[torch.Tensor, torch.Tensor]:
    classes = len(APPEARANCES) * len(MOTIONS)
    labels = torch.arange(n) % classes
    clips = torch.empty(n, 3, frames, size, size, dtype=torch.uint8)
    for i in range(n):
        g = torch.Generator().manual_seed((seed * 1_000_003 + split) * 10_000_019 + i)
        clips[i] = _clip(g, frames, size, int(labels[i]))
    return clips, labels


def load_moving(text: str = "", frames: int = 8) -> ClipData:
    """The moving-objects clip set of spec options ``text`` with ``frames`` frames per clip."""
    o = parse_options(text, DEFAULTS, "moving")
    if frames < 2:
        raise ValueError(f"frames must be >= 2 for motion to show, got {frames}")
    if o["size"] < 16:
        raise ValueError(f"moving: size must be >= 16, got {o['size']}")
    train = _split(o["train"], frames, o["size"], o["seed"], 1)
    test = _split(o["test"], frames, o["size"], o["seed"], 2)
    classes = [f"{a}-{m}" for a in APPEARANCES for m in MOTIONS]
    name = "moving:" + ",".join(f"{k}={v}" for k, v in o.items()) + f" ({frames} frames)"
    return ClipData(name, *train, *test, classes)
