"""ImageNet ResNet-18/34/50/101 (He et al., 2016) with a pluggable norm and convolution, as the GN paper trains them.

The structure and parameter names are torchvision's (``resnet50(norm="bn")`` has torchvision's 25,557,032
parameters and loads its state dict); the differences are the arguments:

* ``norm`` — a kind name for :func:`groupnorm.norm_layer` (``"bn"``, ``"gn"``, ``"ln"``, ``"in"``, ``"syncbn"``,
  ``"none"``, ...) or any ``channels -> nn.Module`` callable. A bare ``"gn"`` uses the ``"auto"`` grouping of
  :mod:`groupnorm.layers.grouping`: 32 groups in every layer of these networks (all have C >= 64 and C % 32 == 0),
  as the paper; pass ``norm=groupnorm.norm_layer("gn", group_size=16)`` and the like for other groupings, and
  read the grouping actually used with :func:`groupnorm.describe_norms`.
* ``conv`` — the convolution class, ``nn.Conv2d`` or :class:`groupnorm.WSConv2d` (GN+WS is
  ``norm="gn", conv=WSConv2d``); it builds every convolution, the stem and shortcuts included.
* ``zero_init_last`` (default True) — gamma = 0 in the last norm of every residual block, as the paper.
* ``fuse`` (default True) — ReLU and the residual add run inside :class:`groupnorm.GroupNorm` (see
  :mod:`groupnorm.models.blocks`).

Convolutions get He (kaiming normal, fan_out) initialization; the classifier keeps torch's Linear default.
"""

from __future__ import annotations

import torch
from torch import nn

from groupnorm.layers.norm_registry import NormLike, as_norm_layer
from groupnorm.models.blocks import BasicBlock, Bottleneck, ConvFactory, conv1x1, fuse_relu, init_resnet


class ResNet(nn.Module):
    """An ImageNet-style ResNet; use :func:`resnet18` ... :func:`resnet101` (see the module docstring).

    Example::

        >>> import torch, groupnorm
        >>> model = groupnorm.models.resnet50(norm="gn", conv=groupnorm.WSConv2d, num_classes=100)
        >>> model(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 100])
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: list[int],
        num_classes: int = 1000,
        *,
        norm: NormLike = "gn",
        conv: ConvFactory = nn.Conv2d,
        zero_init_last: bool = True,
        fuse: bool = True,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
            raise ValueError(f"num_classes must be a positive int, got num_classes={num_classes!r}")
        norm_layer = as_norm_layer(norm, num_groups="auto")
        self.inplanes = 64
        self.conv1 = conv(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        make = dict(block=block, norm_layer=norm_layer, conv=conv, fuse=fuse)
        self.layer1 = self._make_layer(planes=64, blocks=layers[0], stride=1, **make)
        self.layer2 = self._make_layer(planes=128, blocks=layers[1], stride=2, **make)
        self.layer3 = self._make_layer(planes=256, blocks=layers[2], stride=2, **make)
        self.layer4 = self._make_layer(planes=512, blocks=layers[3], stride=2, **make)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        self._stem_relu_fused = fuse_relu(self.bn1, fuse)
        init_resnet(self, zero_init_last)

    def _make_layer(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        planes: int,
        blocks: int,
        stride: int,
        norm_layer: object,
        conv: ConvFactory,
        fuse: bool,
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(conv, self.inplanes, planes * block.expansion, stride),
                norm_layer(planes * block.expansion),  # type: ignore[operator]
            )
        kw = dict(norm_layer=norm_layer, conv=conv, fuse=fuse)
        layers = [block(self.inplanes, planes, stride, downsample, **kw)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, **kw) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled, flattened features before the classifier."""
        x = self.bn1(self.conv1(x))
        if not self._stem_relu_fused:
            x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def resnet18(num_classes: int = 1000, **kwargs: object) -> ResNet:
    """ResNet-18 (BasicBlock, 2-2-2-2); keyword arguments as :class:`ResNet`."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, **kwargs)  # type: ignore[arg-type]


def resnet34(num_classes: int = 1000, **kwargs: object) -> ResNet:
    """ResNet-34 (BasicBlock, 3-4-6-3); keyword arguments as :class:`ResNet`."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, **kwargs)  # type: ignore[arg-type]


def resnet50(num_classes: int = 1000, **kwargs: object) -> ResNet:
    """ResNet-50 (Bottleneck, 3-4-6-3), the paper's main network; keyword arguments as :class:`ResNet`."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, **kwargs)  # type: ignore[arg-type]


def resnet101(num_classes: int = 1000, **kwargs: object) -> ResNet:
    """ResNet-101 (Bottleneck, 3-4-23-3); keyword arguments as :class:`ResNet`."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, **kwargs)  # type: ignore[arg-type]
