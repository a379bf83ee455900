"""The forwards of timm's and torchvision's ResNet blocks: the stock ones as the libraries write them (the
rewrite checks the installed source against these), and the fused copies the rewritten blocks run
(see :mod:`~groupnorm.patching.resnets`).

A fused forward is its stock forward statement for statement, except the end ``x = bnN(x); ...; x += shortcut;
x = act(x)``, which becomes ``bnN(x, residual=shortcut)`` (the norm computes ``act`` and adds the shortcut as
``+=`` would); torchvision's also drop the ``relu`` calls after ``bn1`` and ``bn2``, whose norms compute it.
"""

from __future__ import annotations

import torch
from torch import nn

from groupnorm.layers.group_norm import GroupNorm
from groupnorm.patching.residual import without_activation


def _timm_end(block: nn.Module, norm: GroupNorm, x: torch.Tensor, shortcut: torch.Tensor, act: nn.Module):
    # timm: x = norm(x); [x = se(x)]; [x = drop_path(x)]; [shortcut = downsample(shortcut)]; x += shortcut; act(x)
    if block.se is None and block.drop_path is None:
        if block.downsample is not None:
            shortcut = block.downsample(shortcut)
        return norm(x, residual=shortcut)
    x = without_activation(lambda: norm(x), norm)  # se or drop_path set after the patch: the stock order
    if block.se is not None:
        x = block.se(x)
    if block.drop_path is not None:
        x = block.drop_path(x)
    if block.downsample is not None:
        shortcut = block.downsample(shortcut)
    x += shortcut
    return act(x)


def timm_basic_forward(self, x: torch.Tensor) -> torch.Tensor:
    shortcut = x
    x = self.conv1(x)
    x = self.bn1(x)
    x = self.drop_block(x)
    x = self.act1(x)
    x = self.aa(x)
    x = self.conv2(x)
    return _timm_end(self, self.bn2, x, shortcut, self.act2)


def timm_bottleneck_forward(self, x: torch.Tensor) -> torch.Tensor:
    shortcut = x
    x = self.conv1(x)
    x = self.bn1(x)
    x = self.act1(x)
    x = self.conv2(x)
    x = self.bn2(x)
    x = self.drop_block(x)
    x = self.act2(x)
    x = self.aa(x)
    x = self.conv3(x)
    return _timm_end(self, self.bn3, x, shortcut, self.act3)


# torchvision: every norm computes the block's ReLU (patch sets their activation), the last one after the shortcut.
def torchvision_basic_forward(self, x: torch.Tensor) -> torch.Tensor:
    identity = x
    out = self.bn1(self.conv1(x))
    out = self.conv2(out)
    if self.downsample is not None:
        identity = self.downsample(x)
    return self.bn2(out, residual=identity)


def torchvision_bottleneck_forward(self, x: torch.Tensor) -> torch.Tensor:
    identity = x
    out = self.bn1(self.conv1(x))
    out = self.bn2(self.conv2(out))
    out = self.conv3(out)
    if self.downsample is not None:
        identity = self.downsample(x)
    return self.bn3(out, residual=identity)


# The stock forwards the fused ones copy (timm 0.9 to 1.0, torchvision 0.13 on).
TIMM_BASIC = """
def forward(self, x):
    shortcut = x
    x = self.conv1(x)
    x = self.bn1(x)
    x = self.drop_block(x)
    x = self.act1(x)
    x = self.aa(x)
    x = self.conv2(x)
    x = self.bn2(x)
    if self.se is not None:
        x = self.se(x)
    if self.drop_path is not None:
        x = self.drop_path(x)
    if self.downsample is not None:
        shortcut = self.downsample(shortcut)
    x += shortcut
    x = self.act2(x)
    return x
"""
TIMM_BOTTLENECK = """
def forward(self, x):
    shortcut = x
    x = self.conv1(x)
    x = self.bn1(x)
    x = self.act1(x)
    x = self.conv2(x)
    x = self.bn2(x)
    x = self.drop_block(x)
    x = self.act2(x)
    x = self.aa(x)
    x = self.conv3(x)
    x = self.bn3(x)
    if self.se is not None:
        x = self.se(x)
    if self.drop_path is not None:
        x = self.drop_path(x)
    if self.downsample is not None:
        shortcut = self.downsample(shortcut)
    x += shortcut
    x = self.act3(x)
    return x
"""
TORCHVISION_BASIC = """
def forward(self, x):
    identity = x
    out = self.conv1(x)
    out = self.bn1(out)
    out = self.relu(out)
    out = self.conv2(out)
    out = self.bn2(out)
    if self.downsample is not None:
        identity = self.downsample(x)
    out += identity
    out = self.relu(out)
    return out
"""
TORCHVISION_BOTTLENECK = """
def forward(self, x):
    identity = x
    out = self.conv1(x)
    out = self.bn1(out)
    out = self.relu(out)
    out = self.conv2(out)
    out = self.bn2(out)
    out = self.relu(out)
    out = self.conv3(out)
    out = self.bn3(out)
    if self.downsample is not None:
        identity = self.downsample(x)
    out += identity
    out = self.relu(out)
    return out
"""
