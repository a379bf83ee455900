"""ImageNet-scale ImageFolder trees: files decoded per batch by a thread pool, never all held in memory.

Training images get the standard ImageNet augmentation — a random-resized crop (8-100 % of the area, aspect ratio
3/4-4/3) to ``image_size`` and a horizontal flip — with every random choice drawn from (seed, epoch, index) like the
in-memory datasets. Test images are resized to ``image_size · 256/224`` on the shorter side and center-cropped
(the paper's 224 center crop). The per-channel mean/std come from a fixed sample of training images.

Example::

    data = LazyImageFolder(Path("data/imagenet"), "imagefolder:data/imagenet", image_size=224)
    x, y = data.train_batch(torch.arange(64), seed=0, epoch=0)
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from groupnorm.repro.augment import uniform
from groupnorm.repro.image_data import channel_stats
from groupnorm.repro.image_folders import DataUnavailable, list_image_tree
from groupnorm.repro.splits import balanced_order

STATS_SAMPLE = 512  # training images sampled for the per-channel mean/std


class LazyImageFolder:
    """Same interface as :class:`groupnorm.repro.data.ImageData`, for trees too large for memory."""

    def __init__(self, root: Path, name: str, image_size: int = 224, workers: int | None = None) -> None:
        self.name, self.root, self.size = name, root, image_size
        train_dir = root / "train"
        test_dir = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
        if not train_dir.is_dir() or test_dir is None:
            raise DataUnavailable(f"dataset {name!r}: need {root}/train/<class>/* and {root}/val/<class>/*")
        self.classes, train = list_image_tree(train_dir)
        test_classes, test = list_image_tree(test_dir)
        if test_classes != self.classes:
            raise ValueError(
                f"dataset {name!r}: classes under {test_dir} differ from those under {train_dir}"
            )
        self.train_paths = [p for p, _ in train]
        self.train_labels = torch.tensor([c for _, c in train], dtype=torch.int64)
        self.test_paths = [p for p, _ in test]
        self.test_labels = torch.tensor([c for _, c in test], dtype=torch.int64)
        self.pool = ThreadPoolExecutor(workers or min(16, os.cpu_count() or 1))
        g = torch.Generator().manual_seed(0)
        sample = torch.randperm(len(self.train_paths), generator=g)[:STATS_SAMPLE]
        self.mean, self.std = channel_stats(
            self._decode([self.train_paths[i] for i in sample.tolist()], None)
        )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_train(self) -> int:
        return len(self.train_paths)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.size, self.size)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float().div_(255)
        return x.sub_(self.mean[:, None, None]).div_(self.std[:, None, None])

    def _decode(self, paths: list[Path], boxes: list[tuple[float, ...]] | None) -> torch.Tensor:
        return torch.stack(list(self.pool.map(self._load_one, paths, boxes or [None] * len(paths))))

    def _load_one(self, path: Path, box: tuple[float, ...] | None) -> torch.Tensor:
        from PIL import Image

        s = self.size
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            if box is None:  # evaluation: shorter side to s·256/224, center crop s×s
                short = round(s * 256 / 224)
                scale = short / min(w, h)
                im = im.resize((max(s, round(w * scale)), max(s, round(h * scale))), Image.BILINEAR)
                left, top = (im.size[0] - s) // 2, (im.size[1] - s) // 2
                im = im.crop((left, top, left + s, top + s))
            else:
                area_frac, log_ratio, u_x, u_y, flip = box
                ratio = math.exp(log_ratio)
                cw = min(w, round(math.sqrt(area_frac * w * h * ratio)))
                ch = min(h, round(math.sqrt(area_frac * w * h / ratio)))
                left, top = round(u_x * (w - cw)), round(u_y * (h - ch))
                im = im.resize((s, s), Image.BILINEAR, box=(left, top, left + cw, top + ch))
                if flip:
                    im = im.transpose(Image.FLIP_LEFT_RIGHT)
            return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)

    def train_batch(self, index: torch.Tensor, seed: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        u = [uniform(seed, epoch, index, k).tolist() for k in range(5)]
        lo, hi = math.log(3 / 4), math.log(4 / 3)
        boxes = [
            (0.08 + 0.92 * a, lo + (hi - lo) * r, ux, uy, f < 0.5) for a, r, ux, uy, f in zip(*u, strict=True)
        ]
        imgs = self._decode([self.train_paths[i] for i in index.tolist()], boxes)
        return self.normalize(imgs), self.train_labels[index]

    def test_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.test_paths), batch_size):
            paths = self.test_paths[start : start + batch_size]
            yield self.normalize(self._decode(paths, None)), self.test_labels[start : start + batch_size]

    def subset(self, n: int | None, test: int | None = None) -> LazyImageFolder:
        if n is not None and n < self.num_train:
            keep = balanced_order(self.train_labels)[:n].sort().values
            self.train_paths = [self.train_paths[i] for i in keep.tolist()]
            self.train_labels = self.train_labels[keep]
        if test is not None and test < len(self.test_paths):
            keep = balanced_order(self.test_labels)[:test].sort().values
            self.test_paths = [self.test_paths[i] for i in keep.tolist()]
            self.test_labels = self.test_labels[keep]
        return self

    def describe(self) -> dict:
        return {
            "name": self.name,
            "train": self.num_train,
            "test": len(self.test_paths),
            "image_shape": list(self.image_shape),
            "classes": self.num_classes,
            "augment": "random-resized-crop + flip (streamed from disk)",
        }
