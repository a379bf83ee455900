"""A generated scene data set for detection and instance segmentation on a CPU.

Each canvas holds 1..``max_objects`` objects at random positions and sizes on a smooth random background, each
pasted through an object-shaped mask (never a rectangle); later objects occlude earlier ones, and boxes and masks
are those of the visible part. Objects are either the package's own shapes (``objects=shapes``: the class is the
shape, the colour and texture are random) or CIFAR-10 images (``objects=cifar10``: the class is CIFAR-10's, cut
out through a random blob), training scenes from CIFAR-10's training split and evaluation scenes from its test
split. Every scene is a function of (seed, split, index): nothing is stored.

Spec: ``scenes[:key=value,...]`` with keys ``objects`` (shapes | cifar10), ``train``, ``test`` (scene counts),
``canvas`` (side in pixels), ``max_objects``, ``min_side``, ``max_side`` (object sides), ``seed``.

>>> data = load_scenes("objects=shapes,train=4,test=2,canvas=32,max_side=16")
>>> image, target = data.train[0]
>>> image.shape, sorted(target)
(torch.Size([3, 32, 32]), ['boxes', 'labels', 'masks'])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from groupnorm.repro.detection.data import DetectionData, boxes_from_masks
from groupnorm.repro.shapes import SHAPES, blob_mask, resize_patch, shape_mask, texture

DEFAULTS = {"objects": "shapes", "train": 2000, "test": 200, "canvas": 64, "max_objects": 3, "min_side": 12,
            "max_side": 32, "seed": 0}  # fmt: skip
MIN_VISIBLE = 12  # pixels: an object occluded below this is dropped (it would be an unfair ground truth)


def parse_options(text: str, defaults: dict, what: str) -> dict:
    """``key=value,...`` over ``defaults`` (values take the default's type); a clear error for anything else."""
    options = dict(defaults)
    for item in (t.strip() for t in text.split(",") if t.strip()):
        key, sep, value = item.partition("=")
        if not sep or key not in defaults:
            raise ValueError(f"{what}: unknown option {item!r}; options are {', '.join(defaults)}")
        kind = type(defaults[key])
        try:
            options[key] = kind(value)
        except ValueError:
            raise ValueError(f"{what}: {key} must be {kind.__name__}, got {value!r}") from None
        if kind is int and options[key] < (0 if key == "seed" else 1):
            raise ValueError(f"{what}: {key} must be positive, got {value!r}")
    return options


@dataclass
class ObjectBank:
    """Where objects come from: generated shapes, or images with labels pasted through random blobs."""

    classes: list[str]
    images: torch.Tensor | None = None  # (N, 3, h, w) uint8, or None for generated shapes
    labels: torch.Tensor | None = None

    def draw(self, side: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(patch (3, side, side) uint8, mask (side, side) bool, class index 0..K-1)."""
        if self.images is None:
            label = int(torch.randint(len(self.classes), (), generator=g))
            return texture(side, g), shape_mask(self.classes[label], side, g), label
        i = int(torch.randint(len(self.images), (), generator=g))
        return resize_patch(self.images[i], side), blob_mask(side, g), int(self.labels[i])


class SceneSplit:
    """``count`` scenes of one split; ``split[i]`` is ``(image, target)``."""

    def __init__(self, bank: ObjectBank, count: int, options: dict, split_seed: int) -> None:
        self.bank, self.count, self.o, self.split_seed = bank, count, options, split_seed

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        if not 0 <= index < self.count:
            raise IndexError(f"scene {index} out of range 0..{self.count - 1}")
        o = self.o
        g = torch.Generator().manual_seed((o["seed"] * 1_000_003 + self.split_seed) * 10_000_019 + index)
        side = o["canvas"]
        low = F.interpolate(torch.rand(1, 3, 4, 4, generator=g), size=(side, side), mode="bilinear")[0]
        image = (40 + 80 * low + 15 * torch.rand(3, side, side, generator=g)).to(torch.uint8)
        masks, labels = [], []
        for _ in range(int(torch.randint(1, o["max_objects"] + 1, (), generator=g))):
            s = int(torch.randint(o["min_side"], o["max_side"] + 1, (), generator=g))
            patch, mask, label = self.bank.draw(s, g)
            y, x = (int(torch.randint(0, side - s + 1, (), generator=g)) for _ in range(2))
            full = torch.zeros(side, side, dtype=torch.bool)
            full[y : y + s, x : x + s] = mask
            region = image[:, y : y + s, x : x + s]
            region[:, mask] = patch[:, mask]
            masks = [m & ~full for m in masks]  # the new object occludes the earlier ones
            masks.append(full)
            labels.append(label + 1)
        keep = [i for i, m in enumerate(masks) if int(m.sum()) >= MIN_VISIBLE]
        mask_t = torch.stack([masks[i] for i in keep]).to(torch.uint8) if keep else torch.zeros(0, side, side)
        target = {
            "boxes": boxes_from_masks(mask_t) if keep else torch.zeros(0, 4),
            "labels": torch.tensor([labels[i] for i in keep], dtype=torch.int64),
            "masks": mask_t.to(torch.uint8),
        }
        return image, target


def load_scenes(text: str = "", data_root: str | None = None, *, download: bool = True) -> DetectionData:
    """The scene data set of spec options ``text`` (see the module docstring)."""
    o = parse_options(text, DEFAULTS, "scenes")
    if o["objects"] not in ("shapes", "cifar10"):
        raise ValueError(f"scenes: objects must be shapes or cifar10, got {o['objects']!r}")
    if not o["min_side"] <= o["max_side"] <= o["canvas"]:
        raise ValueError(
            f"scenes: need min_side <= max_side <= canvas, got {o['min_side']}, {o['max_side']}, {o['canvas']}"
        )
    if o["min_side"] < 4:
        raise ValueError(f"scenes: min_side must be >= 4, got {o['min_side']}")
    if o["objects"] == "shapes":
        train_bank = test_bank = ObjectBank(list(SHAPES))
    else:
        from groupnorm.repro.data import load_dataset

        cifar = load_dataset("cifar10", data_root, download=download)
        train_bank = ObjectBank(cifar.classes, cifar.train_images, cifar.train_labels)
        test_bank = ObjectBank(cifar.classes, cifar.test_images, cifar.test_labels)
    name = "scenes:" + ",".join(f"{k}={v}" for k, v in o.items())
    return DetectionData(
        name,
        list(train_bank.classes),
        SceneSplit(train_bank, o["train"], o, split_seed=1),
        SceneSplit(test_bank, o["test"], o, split_seed=2),
    )
