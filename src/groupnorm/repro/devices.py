"""Virtual devices: the paper's "BN statistics per GPU, not synchronized" on one CPU or GPU.

A training step of K devices × b images is one tensor of K·b images. :class:`DeviceBatchNorm2d` computes the
batch statistics of each device's b images separately, in one batched call — the K devices' channels laid side by
side as K·C channels of one BatchNorm — which is exactly what K unsynchronized BatchNorm replicas compute.

Running statistics rule: every device makes torch's update with its own batch statistics,
``r_k = (1 - m)·r + m·s_k`` (s_k: mean, or unbiased variance, of device k), and the layer keeps their average,
``r ← mean_k r_k = (1 - m)·r + m·mean_k(s_k)``. Under torchrun each process applies the rule to its own devices
and the processes then average their buffers (:func:`~groupnorm.repro.runtime.average_buffers`); since the
update is linear and every process holds the same number of devices, the result is the same as the
single-process emulation.

``syncbn`` is plain BatchNorm over all K·b images, which is what SyncBatchNorm computes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class DeviceBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are computed per virtual device of ``batch_per_device`` images.

    Parameters, buffers and ``state_dict`` are those of ``nn.BatchNorm2d``; eval mode is plain BN.

    >>> bn = DeviceBatchNorm2d(16, batch_per_device=4)
    >>> y = bn(torch.randn(12, 16, 8, 8))   # 3 devices of 4 images, each normalized by its own statistics
    """

    def __init__(self, num_features: int, batch_per_device: int, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        if batch_per_device < 1:
            raise ValueError(f"batch_per_device must be >= 1, got {batch_per_device}")
        self.batch_per_device = batch_per_device

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, batch_per_device={self.batch_per_device}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        n, c = x.shape[:2]
        b = self.batch_per_device
        if n % b:
            raise ValueError(f"batch of {n} images is not a whole number of devices of batch_per_device={b}")
        k = n // b
        if k == 1:  # one device: exactly torch's BatchNorm, with its fused kernel
            return super().forward(x)
        # Device k's channel c becomes channel k·C + c of a (b, K·C, H, W) tensor, so torch's fused BatchNorm
        # kernel (forward and backward) computes every device's statistics in one call; the two transposing
        # copies cost far less than the chain of elementwise autograd ops a reduction per device would take.
        spatial = x.shape[2:]
        channels_last = (
            x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        )
        if channels_last:  # the same regrouping on the (N, H, W, C) memory, so the result stays channels_last
            xs = x.permute(0, 2, 3, 1).reshape(k, b, *spatial, c).permute(1, 2, 3, 0, 4)
            xs = xs.reshape(b, *spatial, k * c).permute(0, 3, 1, 2)
        else:
            xs = x.reshape(k, b, c, *spatial).transpose(0, 1).reshape(b, k * c, *spatial)
        weight = self.weight.repeat(k) if self.affine else None
        bias = self.bias.repeat(k) if self.affine else None
        running_mean = running_var = None
        factor = 0.0
        if self.track_running_stats:
            # Each device's replica of the running statistics makes torch's own update; the layer keeps their
            # average (the module docstring's rule).
            self.num_batches_tracked.add_(1)
            factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            running_mean, running_var = self.running_mean.repeat(k), self.running_var.repeat(k)
        y = F.batch_norm(xs, running_mean, running_var, weight, bias, True, factor, self.eps)
        if self.track_running_stats:
            with torch.no_grad():
                self.running_mean.copy_(running_mean.view(k, c).mean(0))
                self.running_var.copy_(running_var.view(k, c).mean(0))
        if channels_last:
            y = y.permute(0, 2, 3, 1).reshape(b, *spatial, k, c).permute(3, 0, 1, 2, 4).contiguous()
            return y.view(n, *spatial, c).permute(0, 3, 1, 2)
        return y.reshape(b, k, c, *spatial).transpose(0, 1).reshape(x.shape)


def device_bn(batch_per_device: int) -> Callable[[int], nn.Module]:
    """A ``channels -> module`` norm factory (what ``norm=`` of the models takes) for per-device BatchNorm."""
    return lambda channels: DeviceBatchNorm2d(channels, batch_per_device=batch_per_device)


class DeviceBatchNorm3d(DeviceBatchNorm2d):
    """:class:`DeviceBatchNorm2d` for clips (N, C, T, H, W): statistics over T, H, W and each device's clips.

    >>> bn = DeviceBatchNorm3d(8, batch_per_device=2)
    >>> bn(torch.randn(4, 8, 3, 5, 5)).shape   # 2 devices of 2 clips
    torch.Size([4, 8, 3, 5, 5])
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() != 5:
            raise ValueError(f"expected a 5-D input (N, C, T, H, W), got {input.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)  # also on the per-device path, which never reaches BatchNorm's own check
        return super().forward(x)


def device_bn3d(batch_per_device: int) -> Callable[[int], nn.Module]:
    """The ``channels -> module`` factory of :class:`DeviceBatchNorm3d`."""
    return lambda channels: DeviceBatchNorm3d(channels, batch_per_device=batch_per_device)
