"""Small synthetic datasets for the reproduction-suite tests (no downloads, no shared data)."""

from __future__ import annotations

import torch

from groupnorm.repro.augment import Augment
from groupnorm.repro.data import ImageData


def synthetic_data(n_train: int = 48, n_test: int = 20, side: int = 8, classes: int = 3) -> ImageData:
    """Images whose class sets the mean brightness of one channel: learnable in a few steps."""
    g = torch.Generator().manual_seed(123)

    def make(n):
        labels = torch.arange(n) % classes
        imgs = torch.randint(0, 120, (n, 3, side, side), generator=g)
        imgs[torch.arange(n), labels % 3] += 100 + 30 * (labels // 3)[:, None, None]
        return imgs.clamp(0, 255).to(torch.uint8), labels

    tr_x, tr_y = make(n_train)
    te_x, te_y = make(n_test)
    return ImageData(
        "synthetic", tr_x, tr_y, te_x, te_y, [str(c) for c in range(classes)], Augment(pad=1, flip=True)
    )
