"""The hyper-parameters of one video run: one dataclass, recorded with every result.

The paper's Kinetics protocol (§6.2) scaled to a CPU: SGD with momentum 0.9, weight decay 1e-4, learning rate
``base_lr × clips_per_device / 8`` (linear scaling from 8 clips per device), a linear warm-up and a cosine decay
over the epochs; the same epochs for every batch size; validation error of the last epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from groupnorm.repro.run_config import RunConfig

VIDEO_NORMS: tuple[str, ...] = ("bn", "gn")
MEMORY_FORMATS: tuple[str, ...] = ("auto", "channels_last_3d", "contiguous")


@dataclass(frozen=True)
class VideoConfig(RunConfig):
    """One video run's settings (see :class:`~groupnorm.repro.run_config.RunConfig`).

    >>> cfg = VideoConfig(norm="gn", clips_per_device=4, epochs=10)
    >>> cfg.lr, cfg.clips_per_step, cfg.channels_last
    (0.05, 8, True)
    """

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"norm": VIDEO_NORMS, "memory_format": MEMORY_FORMATS}

    dataset: str = "moving"  # moving[:OPTIONS] (generated) or clips:ROOT (see video.folder)
    frames: int = 8  # frames per clip (the paper: 32, and 64 for its long-clip setting)
    norm: str = "gn"  # bn (statistics per device over T, H, W) or gn
    model: str = "r3d8"  # r3d<6n+2>
    width: float = 1  # channels × width
    gn_groups: int = 8  # GN groups (gcd fallback in narrow layers)
    devices: int = 2  # virtual devices per step
    clips_per_device: int = 8  # BN statistics over these
    epochs: int = 10
    base_lr: float = 0.1  # for 8 clips per device, scaled linearly
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    # channels_last_3d: yes, no, or auto: for GN only, where it is faster (measured on CPU: GN 0.8 vs 1.2 s a step,
    # per-device BN 1.8 vs 1.2 s, whose regrouping copies a channels_last_3d input to contiguous)
    memory_format: str = "auto"
    eval_batch: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        self.check(
            at_least_one=("frames", "gn_groups", "devices", "clips_per_device", "epochs", "eval_batch"),
            positive=("base_lr", "width"),
        )

    @property
    def channels_last(self) -> bool:
        """Whether the run trains in channels_last_3d (see ``memory_format``)."""
        return self.memory_format == "channels_last_3d" or (
            self.memory_format == "auto" and self.norm == "gn"
        )

    @property
    def rounds(self) -> int:
        return self.epochs

    @property
    def clips_per_step(self) -> int:
        return self.devices * self.clips_per_device

    @property
    def lr(self) -> float:
        return self.base_lr * self.clips_per_device / 8

    def lr_at(self, epoch: float) -> float:
        if epoch < self.warmup_epochs:
            return self.lr * epoch / self.warmup_epochs
        w = min(self.warmup_epochs, self.epochs)
        progress = (epoch - w) / (self.epochs - w) if self.epochs > w else 1.0
        return self.lr * 0.5 * (1 + math.cos(math.pi * progress))

    def run_name(self) -> str:
        """E.g. ``gn_c8_f8_k2_s0`` (norm, clips per device, frames, devices, seed)."""
        return f"{self.norm}_c{self.clips_per_device}_f{self.frames}_k{self.devices}_s{self.seed}"
