"""The hyper-parameters of one training run: one dataclass, recorded with every result.

Defaults follow the paper's ImageNet protocol (§4.1), scaled by epochs: SGD with momentum 0.9, weight decay
1e-4 on every weight including gamma and beta, learning rate ``base_lr × batch_per_device / 32``, divided by 10 at
30 %, 60 % and 90 % of the epochs, the same number of epochs for every batch size, gamma = 0 in the last norm of
each residual block, and validation error = median of the last 5 epochs of 100 (the last 5 % of any run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from groupnorm.repro.run_config import RunConfig

NORMS = ("bn", "syncbn", "gn", "ln", "in", "gn+ws", "none")
SCHEDULES = ("step", "cosine")
SHORTCUTS = ("pad", "conv")  # CIFAR ResNets: option A (zero-padded identity) or B (1x1 conv + norm)


@dataclass(frozen=True)
class HParams(RunConfig):
    """One classification run's settings (see :class:`~groupnorm.repro.run_config.RunConfig`).

    >>> hp = HParams(norm="gn", groups=8, batch_per_device=2, epochs=10)
    >>> hp.lr, hp.global_batch, hp.run_id().startswith("gn-G8_b2_k8_s0_")
    (0.00625, 16, True)
    """

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "norm": NORMS,
        "schedule": SCHEDULES,
        "shortcut": SHORTCUTS,
    }

    dataset: str = "digits"  # a data spec of groupnorm.repro.data.load_dataset
    model: str = "resnet20"  # a name of groupnorm.models.get_model
    width: float = 1  # width multiplier of the model (channels × width)
    norm: str = "gn"  # bn (per device), syncbn (over all devices), gn, ln, in, gn+ws (GN with WSConv2d), none
    groups: int | None = (
        None  # GN: number of groups (None with group_size None: the model's default grouping)
    )
    group_size: int | None = None  # GN: channels per group instead of a number of groups
    devices: int = 8  # virtual devices per step (the paper's 8 GPUs)
    batch_per_device: int = 32  # images per device; BN statistics are computed over these
    epochs: int = 100  # the same for every batch size, as in the paper
    base_lr: float = 0.1  # learning rate for 32 images per device; scaled linearly by batch_per_device / 32
    momentum: float = 0.9
    weight_decay: float = 1e-4
    decay_norm_params: bool = True  # weight decay on gamma/beta too (the paper); False for fine-tuning
    schedule: str = "step"  # step: ÷10 at each milestone; cosine: cosine to 0 over all epochs
    milestones: tuple[float, ...] = (
        0.3,
        0.6,
        0.9,
    )  # fractions of the epochs where the step schedule divides by 10
    warmup_epochs: float = 0.0  # linear warm-up from 0 (the paper uses none at 100 epochs)
    zero_init_last: bool = True  # gamma = 0 in the last norm of each residual block
    shortcut: str = "pad"  # CIFAR ResNets' downsampling shortcut: pad (option A) or conv (option B)
    train_subset: int | None = None  # keep only this many training images (a fixed class-balanced subset)
    test_subset: int | None = None  # evaluate on this many test images (a fixed class-balanced subset)
    image_size: int | None = None  # resize images to this square side (ImageFolder data of mixed sizes)
    # Hold this many training images out (a fixed class-balanced set) and report the error on them instead of
    # the test set: the split a recipe is chosen on, so the test set is never looked at while choosing.
    val_split: int | None = None
    channels_last: bool = (
        False  # train and evaluate in channels_last memory format (same math, faster on CPU)
    )
    eval_batch: int = 500  # evaluation batch size (BN uses running statistics, so it does not matter)
    seed: int = 0  # initialization, data order and augmentation

    def __post_init__(self) -> None:
        if self.groups is not None and self.group_size is not None:
            raise ValueError(
                f"give groups or group_size, not both (groups={self.groups}, group_size={self.group_size})"
            )
        self.check(
            at_least_one=("devices", "batch_per_device", "epochs", "eval_batch"),
            optional_at_least_one=(
                "groups",
                "group_size",
                "train_subset",
                "test_subset",
                "image_size",
                "val_split",
            ),
            positive=("width", "base_lr"),
        )

    @property
    def lr(self) -> float:
        """The paper's linear scaling rule: base_lr for 32 images per device."""
        return self.base_lr * self.batch_per_device / 32

    @property
    def rounds(self) -> int:
        """An epoch is a round of the training loop."""
        return self.epochs

    @property
    def global_batch(self) -> int:
        return self.devices * self.batch_per_device

    def lr_at(self, epoch: float) -> float:
        """Learning rate at a (fractional) epoch in [0, epochs)."""
        if self.warmup_epochs > 0 and epoch < self.warmup_epochs:
            return self.lr * epoch / self.warmup_epochs
        if self.schedule == "cosine":  # from the end of the warm-up to 0 at the last epoch
            w = min(self.warmup_epochs, self.epochs)
            progress = (epoch - w) / (self.epochs - w) if self.epochs > w else 1.0
            return self.lr * 0.5 * (1 + math.cos(math.pi * progress))
        drops = sum(epoch >= round(f * self.epochs) for f in self.milestones)
        return self.lr * 0.1**drops

    def norm_label(self) -> str:
        """The norm with its grouping, e.g. ``gn``, ``gn/G=16``, ``gn/16ch``."""
        if self.norm in ("gn", "gn+ws") and self.groups is not None:
            return f"{self.norm}/G={self.groups}"
        if self.norm in ("gn", "gn+ws") and self.group_size is not None:
            return f"{self.norm}/{self.group_size}ch"
        return self.norm

    def run_name(self) -> str:
        """E.g. ``gn-G8_b2_k4_s0`` (norm and grouping, images per device, devices, seed)."""
        norm = self.norm_label().replace("/", "-").replace("=", "").replace("+", "")
        return f"{norm}_b{self.batch_per_device}_k{self.devices}_s{self.seed}"
