"""The hyper-parameters of one detection run: one dataclass, recorded with every result.

Defaults follow the paper's COCO fine-tuning (§6.1) scaled to the data: SGD with momentum 0.9, weight decay 1e-4,
learning rate ``base_lr × images per step / 16`` (Detectron's 0.02 for 16 images), a linear warm-up and ÷10 at
2/3 and 8/9 of the steps. Model sizes (FPN width, head widths, sampled RoIs) are sized to small images; the
real-scale preset sets torchvision's defaults.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

# BN* (frozen, FrozenBatchNorm2d), BN fine-tuned at the small batch, GN in the backbone only, GN in backbone +
# FPN + heads, and the latter from scratch (random backbone)
VARIANTS: tuple[str, ...] = ("bn_frozen", "bn_finetune", "gn_backbone", "gn_all", "gn_scratch")
VARIANT_LABELS = {
    "bn_frozen": "BN* (frozen)", "bn_finetune": "BN (fine-tuned)", "gn_backbone": "GN backbone",
    "gn_all": "GN backbone + FPN + heads", "gn_scratch": "GN from scratch",
}  # fmt: skip


@dataclass(frozen=True)
class DetectionConfig:
    dataset: str = "scenes"  # scenes[:OPTIONS] (generated) or coco:ROOT (see detection.coco)
    variant: str = "gn_all"  # one of VARIANTS
    backbone: str = "resnet8"  # a classification model name (CIFAR-style resnet<6n+2> or resnet18/50/...)
    width: float = 1  # CIFAR ResNets' width multiplier (must match the pre-trained checkpoint)
    shortcut: str = "conv"  # CIFAR ResNets' shortcut (must match the pre-trained checkpoint)
    pretrained: str | None = None  # a `groupnorm repro` checkpoint.pt of the backbone (None: random init)
    gn_groups: int = 16  # GN groups in the FPN and heads (and a from-scratch backbone), gcd fallback
    devices: int = 4  # virtual devices per step (BN statistics per device)
    images_per_device: int = 2  # the paper: 1-2 images per GPU
    steps: int = 1000  # training steps (each of devices × images_per_device images)
    steps_per_round: int = 250  # a checkpoint and an evaluation after every this many steps
    base_lr: float = 0.02  # learning rate for 16 images per step, scaled linearly
    momentum: float = 0.9
    weight_decay: float = 1e-4
    decay_norm_params: bool = False  # the paper fine-tunes with weight decay 0 on gamma/beta
    warmup_steps: int = 100  # linear warm-up from lr/3 (Detectron's warm-up factor)
    milestones: tuple[float, ...] = (2 / 3, 8 / 9)  # fractions of the steps where the LR is divided by 10
    image_size: int | None = None  # the transform's min_size (None: the data's canvas, no resizing)
    max_image_size: int | None = None  # the transform's max_size (None: image_size)
    fpn_channels: int = 64  # FPN width (torchvision: 256)
    box_head_width: int = 256  # box head's fully connected width (torchvision: 1024)
    mask_head_channels: int = 64  # mask head's conv width (torchvision: 256)
    rois_per_image: int = 64  # RoIs sampled per image for the box head (torchvision: 512)
    test_images: int | None = None  # evaluate on the first this many test images (None: all)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant: unknown variant {self.variant!r}; choose from {', '.join(VARIANTS)}")
        for name in ("gn_groups", "devices", "images_per_device", "steps", "steps_per_round", "fpn_channels",
                     "box_head_width", "mask_head_channels", "rois_per_image"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("image_size", "max_image_size", "test_images"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        if self.base_lr <= 0:
            raise ValueError(f"base_lr must be > 0, got {self.base_lr}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")

    @property
    def images_per_step(self) -> int:
        return self.devices * self.images_per_device

    @property
    def lr(self) -> float:
        return self.base_lr * self.images_per_step / 16

    @property
    def rounds(self) -> int:
        return -(-self.steps // self.steps_per_round)

    def lr_at(self, step: int) -> float:
        """The learning rate of step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return self.lr * (1 / 3 + (2 / 3) * step / self.warmup_steps)
        return self.lr * 0.1 ** sum(step >= round(f * self.steps) for f in self.milestones)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        d["lr"] = self.lr
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DetectionConfig:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if "milestones" in kw:
            kw["milestones"] = tuple(kw["milestones"])
        return cls(**kw)

    def run_id(self) -> str:
        """A readable, unique directory name, e.g. ``gn_all_i2_k4_s0_1a2b3c4d``."""
        digest = hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.variant}_i{self.images_per_device}_k{self.devices}_s{self.seed}_{digest}"
