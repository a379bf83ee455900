"""Residual blocks with a pluggable norm and convolution, shared by the ImageNet and CIFAR ResNets.

Parameter names follow torchvision (``conv1``/``bn1``/..., ``downsample``), so a torchvision state dict loads
into ``norm="bn"`` models and parameter counts match, whatever the norm is called.

When a norm is :class:`groupnorm.GroupNorm` and ``fuse=True``, the ReLU after it, and at the end of a block the
residual add too, run inside the normalization op (``act(norm(x) + identity)`` in one pass): the same function,
fewer passes over memory. The fused activation shows in the norm's repr.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from groupnorm.layers.group_norm import GroupNorm

ConvFactory = Callable[..., nn.Conv2d]
NormFactory = Callable[[int], nn.Module]


def fuse_relu(norm: nn.Module, fuse: bool) -> bool:
    """Give ``norm`` a fused ReLU when it can take one; True when it did (the caller then skips its ReLU)."""
    if fuse and isinstance(norm, GroupNorm) and norm.activation is None:
        norm.activation = "relu"
        return True
    return False


def conv3x3(conv: ConvFactory, in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return conv(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(conv: ConvFactory, in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return conv(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34 and the CIFAR ResNets)."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        norm_layer: NormFactory,
        conv: ConvFactory = nn.Conv2d,
        fuse: bool = True,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(conv, inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(conv, planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride
        self._relu1_fused = fuse_relu(self.bn1, fuse)
        self._end_fused = fuse_relu(self.bn2, fuse)

    def last_norm(self) -> nn.Module:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn1(self.conv1(x))
        if not self._relu1_fused:
            out = self.relu(out)
        out = self.conv2(out)
        if self._end_fused:
            return self.bn2(out, residual=identity)
        out = self.bn2(out)
        out = out + identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, as torchvision's "ResNet v1.5"), 1x1 expand (ResNet-50/101)."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        norm_layer: NormFactory,
        conv: ConvFactory = nn.Conv2d,
        fuse: bool = True,
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1(conv, inplanes, planes)
        self.bn1 = norm_layer(planes)
        self.conv2 = conv3x3(conv, planes, planes, stride)
        self.bn2 = norm_layer(planes)
        self.conv3 = conv1x1(conv, planes, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self._relu1_fused = fuse_relu(self.bn1, fuse)
        self._relu2_fused = fuse_relu(self.bn2, fuse)
        self._end_fused = fuse_relu(self.bn3, fuse)

    def last_norm(self) -> nn.Module:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn1(self.conv1(x))
        if not self._relu1_fused:
            out = self.relu(out)
        out = self.bn2(self.conv2(out))
        if not self._relu2_fused:
            out = self.relu(out)
        out = self.conv3(out)
        if self._end_fused:
            return self.bn3(out, residual=identity)
        out = self.bn3(out)
        out = out + identity
        return self.relu(out)


def init_resnet(model: nn.Module, zero_init_last: bool) -> None:
    """The paper's initialization: He normal (fan_out) for convolutions, gamma = 1 and beta = 0 in every norm,
    and gamma = 0 in the last norm of each residual block when ``zero_init_last`` (each block starts as identity)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif not isinstance(m, nn.Linear) and not list(m.children()):
            weight, bias = getattr(m, "weight", None), getattr(m, "bias", None)
            if isinstance(weight, torch.Tensor) and weight.dim() == 1:
                nn.init.ones_(weight)
            if isinstance(bias, torch.Tensor) and bias.dim() == 1:
                nn.init.zeros_(bias)
    if zero_init_last:
        for m in model.modules():
            if isinstance(m, (BasicBlock, Bottleneck)):
                weight = getattr(m.last_norm(), "weight", None)
                if isinstance(weight, torch.Tensor):
                    nn.init.zeros_(weight)
