"""A 3-D ResNet for clips (N, C, T, H, W): the paper's I3D idea at CIFAR scale, with the norm over T, H, W.

A 3×3×3 stem, three stages of inflated BasicBlocks (a 3×3×3 then a 1×3×3 convolution; a 1×1×1 convolution + norm
on shortcuts that change shape) with 16, 32, 64 channels × ``width``, spatial strides 1, 2, 2 (time is kept),
global average pooling over T, H, W and a linear classifier; depth ``6n + 2`` as the CIFAR ResNets (``r3d8``: n = 1).
``norm="gn"`` is :class:`groupnorm.GroupNorm` on rank-5 input (statistics over each group's channels and all of
T, H, W); ``norm="bn"`` is BatchNorm with statistics per virtual device (:class:`DeviceBatchNorm3d`).

>>> import torch
>>> model = build_video_model("r3d8", norm="gn", num_classes=8, clips_per_device=2)
>>> model(torch.randn(2, 3, 4, 16, 16)).shape
torch.Size([2, 8])
"""

from __future__ import annotations

import re

import torch
from torch import nn

from groupnorm.repro.devices import device_bn3d


class Block3d(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, (3, 3, 3), (1, stride, stride), (1, 1, 1), bias=False)
        self.bn1 = norm(cout)
        self.conv2 = nn.Conv3d(cout, cout, (1, 3, 3), 1, (0, 1, 1), bias=False)
        self.bn2 = norm(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv3d(cin, cout, 1, (1, stride, stride), bias=False), norm(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet3d(nn.Module):
    """See the module docstring; ``norm`` is a ``channels -> module`` factory."""

    def __init__(self, depth: int, num_classes: int, norm, width: float = 1, in_channels: int = 3) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 (8, 14, 20, ...), got {depth}")
        n = (depth - 2) // 6
        widths = [max(1, round(c * width)) for c in (16, 32, 64)]
        self.stem = nn.Sequential(nn.Conv3d(in_channels, widths[0], 3, 1, 1, bias=False), norm(widths[0]),
                                  nn.ReLU(inplace=True))  # fmt: skip
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            for j in range(n):
                blocks.append(Block3d(cin, w, 2 if (i > 0 and j == 0) else 1, norm))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for b in self.blocks:  # each block starts as its shortcut (the paper's gamma = 0 init)
            nn.init.zeros_(b.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def build_video_model(
    name: str, *, norm: str, num_classes: int, clips_per_device: int, width: float = 1, gn_groups: int = 8
) -> ResNet3d:
    """``r3d<6n+2>`` with ``norm`` ``bn`` (per device of ``clips_per_device`` clips) or ``gn`` (``gn_groups``)."""
    import groupnorm

    m = re.fullmatch(r"r3d(\d+)", name)
    if not m:
        raise ValueError(f"model: unknown video model {name!r}; give r3d<6n+2>, e.g. r3d8, r3d14")
    if norm == "bn":
        factory = device_bn3d(clips_per_device)
    elif norm == "gn":
        factory = groupnorm.norm_layer("gn", num_groups=gn_groups, fallback="gcd", warn=False)
    else:
        raise ValueError(f"norm: video runs take bn or gn, got {norm!r}")
    return ResNet3d(int(m.group(1)), num_classes, factory, width)
