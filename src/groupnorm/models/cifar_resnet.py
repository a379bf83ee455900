"""CIFAR ResNet-20/32/56/110 (He et al., 2016, section 4.2) with a width multiplier, pluggable norm and convolution.

A 3x3 stem, three stages of n BasicBlocks (depth = 6n + 2) with 16, 32, 64 channels times ``width`` and strides
1, 2, 2, global average pooling and a linear classifier. Shortcuts that change shape are the paper's option A
(``shortcut="pad"``: stride-2 subsampling and zero channels; no parameters, so ResNet-20 has 0.27 M parameters)
or option B (``shortcut="conv"``: 1x1 convolution + norm).

``norm``, ``conv``, ``zero_init_last`` and ``fuse`` work as in :mod:`groupnorm.models.resnet`. A bare ``"gn"``
uses the ``"auto"`` grouping of :mod:`groupnorm.layers.grouping`: the paper's 32 groups where a layer has
C >= 64 channels divisible by 32, and groups of 16 channels in narrower layers — with ``width=1``: 1 group at 16
channels, 2 groups at 32, 32 groups at 64. :func:`groupnorm.describe_norms` lists what a model uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from groupnorm.layers.norm_registry import NormLike, as_norm_layer
from groupnorm.models.blocks import BasicBlock, ConvFactory, conv1x1, conv3x3, fuse_relu, init_resnet

SHORTCUTS: tuple[str, ...] = ("pad", "conv")


class ZeroPadShortcut(nn.Module):
    """Option A shortcut: subsample by ``stride`` and append zero channels up to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        extra = self.out_channels - self.in_channels
        # Pad channels on both sides, as the reference implementation, so the identity sits in the middle.
        return F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


class CifarResNet(nn.Module):
    """A CIFAR-style ResNet; use :func:`resnet20` ... :func:`resnet110` (see the module docstring).

    Example::

        >>> import torch, groupnorm
        >>> model = groupnorm.models.resnet20(norm="gn", width=2)
        >>> model(torch.randn(4, 3, 32, 32)).shape
        torch.Size([4, 10])
    """

    def __init__(
        self,
        depth: int,
        num_classes: int = 10,
        *,
        width: float = 1,
        norm: NormLike = "gn",
        conv: ConvFactory = nn.Conv2d,
        zero_init_last: bool = True,
        shortcut: str = "pad",
        fuse: bool = True,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(
                f"depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110, ...), got depth={depth!r}"
            )
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
            raise ValueError(f"num_classes must be a positive int, got num_classes={num_classes!r}")
        if (
            isinstance(width, bool)
            or not isinstance(width, (int, float))
            or not width > 0
            or round(16 * width) < 1
        ):
            raise ValueError(f"width must be a positive number with 16 * width >= 1, got width={width!r}")
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, got shortcut={shortcut!r}")
        norm_layer = as_norm_layer(norm, num_groups="auto")
        n = (depth - 2) // 6
        widths = [round(c * width) for c in (16, 32, 64)]
        self.depth, self.width, self.shortcut = depth, width, shortcut
        self.conv1 = conv3x3(conv, in_channels, widths[0])
        self.bn1 = norm_layer(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.inplanes = widths[0]
        kw = dict(norm_layer=norm_layer, conv=conv, fuse=fuse)
        self.layer1 = self._make_stage(widths[0], n, 1, **kw)
        self.layer2 = self._make_stage(widths[1], n, 2, **kw)
        self.layer3 = self._make_stage(widths[2], n, 2, **kw)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[2], num_classes)
        self._stem_relu_fused = fuse_relu(self.bn1, fuse)
        init_resnet(self, zero_init_last)

    def _make_stage(self, planes: int, blocks: int, stride: int, **kw: object) -> nn.Sequential:
        downsample: nn.Module | None = None
        if stride != 1 or self.inplanes != planes:
            if self.shortcut == "pad":
                downsample = ZeroPadShortcut(self.inplanes, planes, stride)
            else:
                downsample = nn.Sequential(
                    conv1x1(kw["conv"], self.inplanes, planes, stride),  # type: ignore[arg-type]
                    kw["norm_layer"](planes),  # type: ignore[operator]
                )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample, **kw)]  # type: ignore[arg-type]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes, **kw) for _ in range(1, blocks)]  # type: ignore[arg-type]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled, flattened features before the classifier."""
        x = self.bn1(self.conv1(x))
        if not self._stem_relu_fused:
            x = self.relu(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))

    def extra_repr(self) -> str:
        return f"depth={self.depth}, width={self.width}, shortcut={self.shortcut!r}"


def resnet20(num_classes: int = 10, **kwargs: object) -> CifarResNet:
    """CIFAR ResNet-20 (3 blocks per stage); keyword arguments as :class:`CifarResNet`."""
    return CifarResNet(20, num_classes, **kwargs)  # type: ignore[arg-type]


def resnet32(num_classes: int = 10, **kwargs: object) -> CifarResNet:
    """CIFAR ResNet-32 (5 blocks per stage); keyword arguments as :class:`CifarResNet`."""
    return CifarResNet(32, num_classes, **kwargs)  # type: ignore[arg-type]


def resnet56(num_classes: int = 10, **kwargs: object) -> CifarResNet:
    """CIFAR ResNet-56 (9 blocks per stage); keyword arguments as :class:`CifarResNet`."""
    return CifarResNet(56, num_classes, **kwargs)  # type: ignore[arg-type]


def resnet110(num_classes: int = 10, **kwargs: object) -> CifarResNet:
    """CIFAR ResNet-110 (18 blocks per stage); keyword arguments as :class:`CifarResNet`."""
    return CifarResNet(110, num_classes, **kwargs)  # type: ignore[arg-type]
