"""Datasets for the reproduction suite, held in memory as uint8 tensors and served in augmented batches.

Specs accepted by :func:`load_dataset`:

- ``digits`` — scikit-learn's handwritten digits (1797 images, 8x8 grayscale); ships with scikit-learn, so it
  works offline. It has no test set: a fixed stratified 20 % is held out.
- ``textures`` or ``textures:key=value,...`` — the package's own generated set: noisy striped textures of ten
  classes, each image with its own contrast, brightness and tint (:mod:`groupnorm.repro.synthetic`; 16x16 RGB,
  3000 training and 2000 test images by default); offline, deterministic.
- ``cifar10``, ``cifar100``, ``mnist``, ``fashion-mnist`` — from ``root`` (default ``$GROUPNORM_DATA/<name>`` or
  ``~/.cache/groupnorm/data/<name>``): either an ImageFolder tree ``root/{train,test}/<class>/*.png|jpg`` or
  torchvision's own files, which torchvision downloads there when the machine is online.
- ``imagefolder:PATH`` — ``PATH/train/<class>/*`` and ``PATH/test`` (or ``PATH/val``); without either, a held-out
  split of ``train``. Images of different sizes need ``image_size``. A tree too large for memory (ImageNet) is
  streamed from disk with the ImageNet augmentation instead (:mod:`groupnorm.repro.lazy_data`).
- ``npz:TRAIN[,TEST]`` — arrays ``images`` (N,H,W or N,H,W,C uint8) and ``labels``; the test set from
  ``test_images``/``test_labels`` in the same file, from the second file, or else a held-out split.

Example::

    data = load_dataset("digits")
    x, y = data.train_batch(torch.arange(64), seed=0, epoch=0)   # augmented, normalized float32
    for x, y in data.test_batches(256): ...
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from groupnorm import env
from groupnorm.repro.augment import Augment
from groupnorm.repro.image_data import ImageData
from groupnorm.repro.image_folders import IMAGE_SUFFIXES, DataUnavailable, list_image_tree
from groupnorm.repro.lazy_data import LazyImageFolder
from groupnorm.repro.splits import held_out_split

TORCHVISION_SETS = {
    # name: (torchvision class, augmentation, files torchvision expects under root)
    "cifar10": ("CIFAR10", Augment(pad=4, flip=True), "cifar-10-batches-py/"),
    "cifar100": ("CIFAR100", Augment(pad=4, flip=True), "cifar-100-python/"),
    "mnist": ("MNIST", Augment(pad=2), "MNIST/raw/train-images-idx3-ubyte (and the other three idx files)"),
    "fashion-mnist": (
        "FashionMNIST",
        Augment(pad=2, flip=True),
        "FashionMNIST/raw/train-images-idx3-ubyte (and the other three idx files)",
    ),
}
# every form of spec load_dataset takes, as error messages list them
DATASET_FORMS = ("digits", "textures[:OPTIONS]", *TORCHVISION_SETS, "imagefolder:PATH", "npz:TRAIN[,TEST]")
# Data sets without a test split of their own: the evaluation set is held out of their images, so a report calls
# its error "validation" error (the rest are scored on their test split unless ``val_split`` holds images out).
HELD_OUT_EVAL_DATASETS = ("digits",)

# ImageFolder trees whose decoded training images would pass this many bytes are streamed from disk instead
# (groupnorm.repro.lazy_data): ImageNet at 224x224 would need about 190 GB.
IN_MEMORY_LIMIT = env.IN_MEMORY_LIMIT.get()


def default_root(name: str) -> Path:
    base = env.DATA.get() or Path.home() / ".cache" / "groupnorm" / "data"
    return Path(base) / name


def load_dataset(
    spec: str,
    root: str | os.PathLike | None = None,
    *,
    download: bool = True,
    train_subset: int | None = None,
    image_size: int | None = None,
    test_subset: int | None = None,
) -> ImageData | LazyImageFolder:
    """Load the dataset named by ``spec`` (see the module docstring) into memory.

    ``train_subset`` / ``test_subset`` keep a fixed class-balanced subset of the training / test images;
    ``image_size`` resizes every image to a square of that side (ImageFolder trees of mixed sizes need it).
    """
    if spec == "digits":
        data = _load_digits()
    elif spec == "textures" or spec.startswith("textures:"):
        from groupnorm.repro.synthetic import load_textures_spec

        data = load_textures_spec(spec.partition(":")[2])
    elif spec in TORCHVISION_SETS:
        data = _load_named(spec, Path(root) if root else default_root(spec), download, image_size)
    elif spec.startswith("imagefolder:"):
        path = Path(spec.split(":", 1)[1])
        if _too_big_for_memory(path, image_size):
            return LazyImageFolder(path, spec, image_size or 224).subset(train_subset, test_subset)
        data = _load_imagefolder_tree(
            path, spec, image_size, Augment(pad=max(1, _side(image_size) // 8), flip=True)
        )
    elif spec.startswith("npz:"):
        data = _load_npz(spec.split(":", 1)[1])
    else:
        raise ValueError(f"dataset: unknown dataset {spec!r}; choose one of {', '.join(DATASET_FORMS)}")
    return data.subset(train_subset, test_subset)


def _too_big_for_memory(root: Path, image_size: int | None) -> bool:
    """Whether the training images, decoded as uint8, would pass IN_MEMORY_LIMIT bytes (ImageNet would)."""
    train = root / "train"
    if not train.is_dir():
        return False
    files = [
        f for c in train.iterdir() if c.is_dir() for f in c.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        return False
    if image_size is None:
        from PIL import Image

        with Image.open(files[0]) as im:
            w, h = im.size
    else:
        w = h = image_size
    return len(files) * 3 * w * h > IN_MEMORY_LIMIT


def _side(image_size: int | None) -> int:
    return image_size or 32


def _load_digits() -> ImageData:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise DataUnavailable("dataset 'digits' needs scikit-learn: pip install 'groupnorm[repro]'") from e
    d = load_digits()
    # pixel values are 0..16; scale to the full uint8 range like every other dataset
    images = torch.from_numpy(np.rint(d.images * (255 / 16)).astype(np.uint8))[:, None]
    labels = torch.from_numpy(d.target.astype(np.int64))
    tr_x, tr_y, te_x, te_y = held_out_split(images, labels)
    return ImageData("digits", tr_x, tr_y, te_x, te_y, [str(c) for c in range(10)], Augment(pad=1))


def _has_tree(root: Path) -> bool:
    return (root / "train").is_dir()


def _load_named(name: str, root: Path, download: bool, image_size: int | None) -> ImageData:
    cls_name, augment, files = TORCHVISION_SETS[name]
    if _has_tree(root):
        return _load_imagefolder_tree(root, name, image_size, augment)
    try:
        import torchvision.datasets as tvd
    except ImportError:
        tvd = None
    errors = []
    if tvd is not None:
        cls = getattr(tvd, cls_name)
        for attempt in [False, True] if download else [False]:
            try:
                train, test = cls(str(root), train=True, download=attempt), cls(str(root), train=False)
                break
            except Exception as e:  # noqa: BLE001 - torchvision raises RuntimeError, URLError, OSError, ...
                errors.append(f"{type(e).__name__}: {e}")
        else:
            train = None
        if train is not None:
            return ImageData(
                name,
                _to_nchw(train.data),
                torch.as_tensor(np.asarray(train.targets), dtype=torch.int64),
                _to_nchw(test.data),
                torch.as_tensor(np.asarray(test.targets), dtype=torch.int64),
                list(train.classes),
                augment,
            )
    how = "torchvision could not download it" if download and tvd is not None else "downloading is off"
    if tvd is None:
        how = "torchvision is not installed, so it cannot be downloaded"
    detail = f" ({errors[-1]})" if errors else ""
    raise DataUnavailable(
        f"dataset {name!r} was not found under {root} and {how}{detail}. Put it there either as an ImageFolder "
        f"tree {root}/train/<class>/*.png and {root}/test/<class>/*.png, or as torchvision's files "
        f"{root}/{files}; or pass --data-root DIR (or set GROUPNORM_DATA) to where it is."
    )


def _to_nchw(arr) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(arr))
    if t.dim() == 3:
        t = t[:, None]
    elif t.dim() == 4 and t.shape[-1] in (1, 3, 4) and t.shape[1] not in (1, 3, 4):
        t = t.permute(0, 3, 1, 2)
    else:
        raise ValueError(f"images must be N×H×W or N×H×W×C, got shape {tuple(t.shape)}")
    if t.dtype != torch.uint8:
        raise ValueError(f"images must be uint8, got {t.dtype}")
    return t.contiguous()


def _read_images(items: list[tuple[Path, int]], size: tuple[int, int] | None, where: Path) -> torch.Tensor:
    """Decode ``items`` into (N, C, H, W) uint8, resized to ``size`` = (width, height) when given."""
    from PIL import Image

    arrays = []
    mode = None
    for path, _ in items:
        try:
            with Image.open(path) as im:
                if mode is None:  # the first image decides grayscale vs colour for the whole set
                    mode = "L" if im.mode in ("L", "1", "I;16", "I") else "RGB"
                im = im.convert(mode)
                if size is not None and im.size != size:
                    im = im.resize(size, Image.BILINEAR)
                arrays.append(np.asarray(im))
        except (
            OSError,
            ValueError,
        ) as e:  # PIL's UnidentifiedImageError is an OSError; so is a truncated file
            raise DataUnavailable(f"cannot read image {path}: {type(e).__name__}: {e}") from e
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(
            f"images under {where} have different sizes {sorted(shapes)[:3]}...; pass --image-size N"
        )
    return _to_nchw(np.stack(arrays))


def _load_imagefolder_tree(root: Path, name: str, image_size: int | None, augment: Augment) -> ImageData:
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DataUnavailable(
            f"dataset {name!r}: no directory {train_dir}; an ImageFolder dataset needs {root}/train/<class>/*.jpg "
            f"(and optionally {root}/test/<class>/*.jpg or {root}/val/<class>/*.jpg)"
        )
    classes, train_items = list_image_tree(train_dir)
    if not train_items:
        raise DataUnavailable(f"dataset {name!r}: no images found under {train_dir}/<class>/")
    size = (image_size, image_size) if image_size else None
    images = _read_images(train_items, size, train_dir)
    labels = torch.tensor([c for _, c in train_items], dtype=torch.int64)
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    if test_dir is None:
        tr_x, tr_y, te_x, te_y = held_out_split(images, labels)
    else:
        test_classes, test_items = list_image_tree(test_dir)
        if test_classes != classes:
            raise ValueError(
                f"dataset {name!r}: classes under {test_dir} differ from those under {train_dir}"
            )
        tr_x, tr_y = images, labels
        te_x = _read_images(test_items, (images.shape[-1], images.shape[-2]), test_dir)
        te_y = torch.tensor([c for _, c in test_items], dtype=torch.int64)
    return ImageData(name, tr_x, tr_y, te_x, te_y, classes, augment)


def _load_npz(paths: str) -> ImageData:
    files = [Path(p) for p in paths.split(",") if p]
    if not 1 <= len(files) <= 2:
        raise ValueError(f"dataset: npz wants npz:TRAIN or npz:TRAIN,TEST, got {paths!r}")
    for f in files:
        if not f.is_file():
            raise DataUnavailable(f"dataset: npz file {f} does not exist")
    with np.load(files[0]) as z:
        if "images" not in z or "labels" not in z:
            raise ValueError(
                f"dataset: {files[0]} must hold arrays 'images' and 'labels', has {sorted(z.files)}"
            )
        images, labels = _to_nchw(z["images"]), torch.as_tensor(z["labels"].astype(np.int64))
        test = (
            (_to_nchw(z["test_images"]), torch.as_tensor(z["test_labels"].astype(np.int64)))
            if ("test_images" in z)
            else None
        )
    if len(files) == 2:
        with np.load(files[1]) as z:
            prefix = "test_" if "test_images" in z else ""
            test = (_to_nchw(z[prefix + "images"]), torch.as_tensor(z[prefix + "labels"].astype(np.int64)))
    if test is None:
        tr_x, tr_y, te_x, te_y = held_out_split(images, labels)
    else:
        tr_x, tr_y, (te_x, te_y) = images, labels, test
    n_classes = int(max(tr_y.max(), te_y.max())) + 1
    side = tr_x.shape[-1]
    return ImageData(
        f"npz:{paths}",
        tr_x,
        tr_y,
        te_x,
        te_y,
        [str(c) for c in range(n_classes)],
        Augment(pad=max(1, side // 8), flip=False),
    )
