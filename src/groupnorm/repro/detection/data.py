"""What a detection data set is to the trainer: two indexable splits of (image, target) and the class names.

An image is a (3, H, W) uint8 tensor; its target is torchvision's detection format: ``boxes`` (n, 4) float32
``x1, y1, x2, y2`` in pixels, ``labels`` (n,) int64 in 1..K (0 is the background), ``masks`` (n, H, W) uint8.
``skipped`` counts what the reader left out (e.g. images without annotations), which the report lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch


@dataclass
class DetectionData:
    """A detection data set: ``train`` and ``test`` sequences of ``(image, target)``; ``classes`` without background."""

    name: str
    classes: list[str]
    train: Sequence
    test: Sequence
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Classes including the background (what Mask R-CNN's ``num_classes`` takes)."""
        return len(self.classes) + 1

    def describe(self) -> dict:
        return {"name": self.name, "train": len(self.train), "test": len(self.test), "classes": self.classes,
                "skipped": dict(self.skipped)}  # fmt: skip


def normalize_image(image: torch.Tensor) -> torch.Tensor:
    """uint8 (3, H, W) -> float32 in [0, 1]; Mask R-CNN's transform subtracts the mean and divides by the std."""
    return image.float().div_(255)


def boxes_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """Tight ``x1, y1, x2, y2`` boxes (x2, y2 exclusive) of (n, H, W) masks, none of them empty."""
    boxes = torch.zeros(len(masks), 4)
    for i, m in enumerate(masks):
        ys, xs = torch.nonzero(m, as_tuple=True)
        boxes[i] = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
    return boxes
