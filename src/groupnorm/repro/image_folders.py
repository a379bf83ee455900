"""ImageFolder trees (``root/<split>/<class>/*.png``), as both dataset loaders read them: the in-memory one
(:mod:`groupnorm.repro.data`) and the one that streams from disk (:mod:`groupnorm.repro.lazy_data`).

Example::

    classes, items = list_image_tree(Path("data/cifar10/train"))   # ["airplane", ...], [(path, class index), ...]
"""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff"}


class DataUnavailable(RuntimeError):
    """The dataset is neither on disk nor downloadable; the message says where to put it."""


def list_image_tree(split_dir: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """The class names (sorted sub-folder names) and every image of ``split_dir`` with its class index."""
    try:
        classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
        items = []
        for ci, c in enumerate(classes):
            for f in sorted((split_dir / c).iterdir()):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    items.append((f, ci))
    except OSError as e:  # e.g. a directory without read permission
        raise DataUnavailable(f"cannot list the images under {split_dir}: {type(e).__name__}: {e}") from e
    return classes, items
