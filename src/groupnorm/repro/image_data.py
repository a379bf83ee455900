"""``ImageData``: one image data set in memory (uint8 images, labels, normalization, augmentation), what every
loader returns (:mod:`groupnorm.repro.data`, :mod:`groupnorm.repro.synthetic`) and every trainer reads. In a module
of its own so that the loaders can import it without importing each other."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from groupnorm.repro.augment import Augment
from groupnorm.repro.splits import balanced_order


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation (at least 1e-3) of uint8 images or clips ``(N, C, ...)``, scaled to
    [0, 1]; summed in float64, so that 50,000 images sum exactly enough."""
    x = images.double().div_(255)
    dims = (0, *range(2, x.dim()))
    return x.mean(dim=dims).float(), x.std(dim=dims).clamp_min(1e-3).float()


@dataclass
class ImageData:
    """A dataset in memory: uint8 images (N, C, H, W), int64 labels, normalization and training augmentation."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]
    augment: Augment = field(default_factory=Augment)
    mean: torch.Tensor = field(init=False)
    std: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        for part, imgs, labels in (
            ("train", self.train_images, self.train_labels),
            ("test", self.test_images, self.test_labels),
        ):
            if imgs.dtype != torch.uint8 or imgs.dim() != 4:
                raise ValueError(
                    f"{part} images must be uint8 (N, C, H, W), got {imgs.dtype} {tuple(imgs.shape)}"
                )
            if len(imgs) != len(labels):
                raise ValueError(f"{part}: {len(imgs)} images but {len(labels)} labels")
            if len(imgs) == 0:
                raise ValueError(f"dataset {self.name!r} has no {part} images")
        self.mean, self.std = channel_stats(self.train_images)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_train(self) -> int:
        return len(self.train_images)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float().div_(255)
        return x.sub_(self.mean[:, None, None]).div_(self.std[:, None, None])

    def train_batch(self, index: torch.Tensor, seed: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Training images ``index``, augmented as a function of (seed, epoch, index), and their labels."""
        imgs = self.augment(self.train_images[index], index, seed, epoch)
        return self.normalize(imgs), self.train_labels[index]

    def test_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.test_images), batch_size):
            sl = slice(start, start + batch_size)
            yield self.normalize(self.test_images[sl]), self.test_labels[sl]

    def subset(self, n: int | None, test: int | None = None) -> ImageData:
        """The first ``n`` training (and ``test`` test) images of a fixed class-balanced order; None keeps all."""
        for name, v in (("train_subset", n), ("test_subset", test)):
            if v is not None and v <= 0:
                raise ValueError(f"{name} must be positive, got {v}")
        tr = (
            slice(None)
            if n is None or n >= len(self.train_images)
            else (balanced_order(self.train_labels)[:n].sort().values)
        )
        te = (
            slice(None)
            if test is None or test >= len(self.test_images)
            else (balanced_order(self.test_labels)[:test].sort().values)
        )
        if isinstance(tr, slice) and isinstance(te, slice):
            return self
        return ImageData(
            self.name,
            self.train_images[tr],
            self.train_labels[tr],
            self.test_images[te],
            self.test_labels[te],
            self.classes,
            self.augment,
        )

    def validation_split(self, n: int) -> ImageData:
        """Hold out ``n`` training images (a fixed class-balanced set) as the evaluation set; the test set goes.

        The held-out images are the same for every run and seed, and none of them is trained on.
        """
        if not 0 < n < len(self.train_images):
            raise ValueError(
                f"val_split must be between 1 and the {len(self.train_images) - 1} training images less one, "
                f"got {n}"
            )
        order = balanced_order(self.train_labels)
        held, kept = order[:n].sort().values, order[n:].sort().values
        return ImageData(
            f"{self.name} (validation split of {n})",
            self.train_images[kept],
            self.train_labels[kept],
            self.train_images[held],
            self.train_labels[held],
            self.classes,
            self.augment,
        )

    def describe(self) -> dict:
        return {
            "name": self.name,
            "train": len(self.train_images),
            "test": len(self.test_images),
            "image_shape": list(self.image_shape),
            "classes": self.num_classes,
            "augment": {"pad": self.augment.pad, "flip": self.augment.flip},
        }
