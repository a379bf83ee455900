"""The hyper-parameters of one video run: one dataclass, recorded with every result.

The paper's Kinetics protocol (§6.2) scaled to a CPU: SGD with momentum 0.9, weight decay 1e-4, learning rate
``base_lr × clips_per_device / 8`` (linear scaling from 8 clips per device), a linear warm-up and a cosine decay
over the epochs; the same epochs for every batch size; validation error of the last epoch.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields

VIDEO_NORMS: tuple[str, ...] = ("bn", "gn")
MEMORY_FORMATS: tuple[str, ...] = ("auto", "channels_last_3d", "contiguous")


@dataclass(frozen=True)
class VideoConfig:
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
        if self.norm not in VIDEO_NORMS:
            raise ValueError(f"norm: video runs take {', '.join(VIDEO_NORMS)}, got {self.norm!r}")
        for name in ("frames", "gn_groups", "devices", "clips_per_device", "epochs", "eval_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.memory_format not in MEMORY_FORMATS:
            raise ValueError(
                f"memory_format: choose from {', '.join(MEMORY_FORMATS)}, got {self.memory_format!r}"
            )
        if self.base_lr <= 0 or self.width <= 0:
            raise ValueError(f"base_lr and width must be > 0, got {self.base_lr}, {self.width}")

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

    def to_dict(self) -> dict:
        return {**asdict(self), "lr": self.lr}

    @classmethod
    def from_dict(cls, d: dict) -> VideoConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def run_id(self) -> str:
        """A readable, unique directory name, e.g. ``gn_c8_f8_k2_s0_1a2b3c4d``."""
        digest = hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.norm}_c{self.clips_per_device}_f{self.frames}_k{self.devices}_s{self.seed}_{digest}"
