"""Clips in memory: uint8 (N, C, T, H, W) tensors with labels, normalized per channel, served in batches.

>>> import torch
>>> data = ClipData("toy", torch.zeros(4, 3, 2, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]),
...                 torch.zeros(2, 3, 2, 8, 8, dtype=torch.uint8), torch.tensor([0, 1]), ["a", "b"])
>>> x, y = data.train_batch(torch.tensor([0, 3]))
>>> x.shape, y.tolist()
(torch.Size([2, 3, 2, 8, 8]), [0, 1])
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from groupnorm.repro.image_data import channel_stats


@dataclass
class ClipData:
    name: str
    train_clips: torch.Tensor
    train_labels: torch.Tensor
    test_clips: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]
    mean: torch.Tensor = field(init=False)
    std: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        for part, clips, labels in (("train", self.train_clips, self.train_labels),
                                    ("test", self.test_clips, self.test_labels)):  # fmt: skip
            if clips.dtype != torch.uint8 or clips.dim() != 5:
                raise ValueError(
                    f"{part} clips must be uint8 (N, C, T, H, W), got {clips.dtype} {tuple(clips.shape)}"
                )
            if len(clips) != len(labels) or len(clips) == 0:
                raise ValueError(f"{part}: {len(clips)} clips and {len(labels)} labels (need equal and > 0)")
        if self.train_clips.shape[1:] != self.test_clips.shape[1:]:
            raise ValueError(
                f"train clips {tuple(self.train_clips.shape[1:])} and test clips "
                f"{tuple(self.test_clips.shape[1:])} differ in shape"
            )
        self.mean, self.std = channel_stats(self.train_clips)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_train(self) -> int:
        return len(self.train_clips)

    @property
    def clip_shape(self) -> tuple[int, ...]:
        return tuple(self.train_clips.shape[1:])

    def normalize(self, clips: torch.Tensor) -> torch.Tensor:
        x = clips.float().div_(255)
        return x.sub_(self.mean[:, None, None, None]).div_(self.std[:, None, None, None])

    def train_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training clips ``index`` (no flips: they would turn one motion class into another) and labels."""
        return self.normalize(self.train_clips[index]), self.train_labels[index]

    def test_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.test_clips), batch_size):
            sl = slice(start, start + batch_size)
            yield self.normalize(self.test_clips[sl]), self.test_labels[sl]

    def describe(self) -> dict:
        return {"name": self.name, "train": self.num_train, "test": len(self.test_clips),
                "clip_shape": list(self.clip_shape), "classes": self.classes}  # fmt: skip
