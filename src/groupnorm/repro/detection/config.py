"""The hyper-parameters of one detection run: one dataclass, recorded with every result.

Defaults follow the paper's COCO fine-tuning (§6.1) scaled to the data: SGD with momentum 0.9, weight decay 1e-4,
learning rate ``base_lr × images per step / 16`` (Detectron's 0.02 for 16 images), a linear warm-up and ÷10 at
2/3 and 8/9 of the steps. Model sizes (FPN width, head widths, sampled RoIs) are sized to small images; the
real-scale preset sets torchvision's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from groupnorm.repro.run_config import RunConfig

# BN* (frozen, FrozenBatchNorm2d), BN fine-tuned at the small batch, GN in the backbone only, GN in backbone +
# FPN + heads, and the latter from scratch (random backbone)
VARIANTS: tuple[str, ...] = ("bn_frozen", "bn_finetune", "gn_backbone", "gn_all", "gn_scratch")
VARIANT_LABELS = {
    "bn_frozen": "BN* (frozen)", "bn_finetune": "BN (fine-tuned)", "gn_backbone": "GN backbone",
    "gn_all": "GN backbone + FPN + heads", "gn_scratch": "GN from scratch",
}  # fmt: skip


@dataclass(frozen=True)
class DetectionConfig(RunConfig):
    """One detection run's settings (see :class:`~groupnorm.repro.run_config.RunConfig`).

    >>> cfg = DetectionConfig(variant="gn_all", images_per_device=2, devices=4, steps=1000, steps_per_round=250)
    >>> cfg.lr, cfg.rounds
    (0.01, 4)
    """

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"variant": VARIANTS}

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
        self.check(
            at_least_one=("gn_groups", "devices", "images_per_device", "steps", "steps_per_round", "fpn_channels",
                          "box_head_width", "mask_head_channels", "rois_per_image"),
            optional_at_least_one=("image_size", "max_image_size", "test_images"),
            positive=("base_lr",),
            non_negative=("warmup_steps",),
        )  # fmt: skip

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

    def run_name(self) -> str:
        """E.g. ``gn_all_i2_k4_s0`` (variant, images per device, devices, seed)."""
        return f"{self.variant}_i{self.images_per_device}_k{self.devices}_s{self.seed}"
