"""COCO-format data from disk: ``ROOT/annotations/instances_{train,val}*.json`` and the images they name.

Spec ``coco:ROOT`` (optionally ``coco:ROOT,train=NAME,val=NAME`` for the split names, default ``train2017`` and
``val2017``): annotations ``ROOT/annotations/instances_NAME.json``, images ``ROOT/NAME/<file_name>``. Crowd
annotations are left out of the targets and so of the evaluation's ground truth, where the official evaluation
ignores detections on them: on COCO itself, AP here is slightly below the official number. Bad input is an error naming
the file and the entry: an image the JSON names but the folder lacks, a box outside its image, an annotation of an
unknown image or category. An image with no (non-crowd) annotation cannot train Mask R-CNN's heads and is skipped;
the skips are counted and the report lists them.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from groupnorm.repro.detection.data import DetectionData

BOX_TOLERANCE = 1.0  # pixels: COCO's own boxes pass the border by rounding


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"coco: annotation file {path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"coco: {path} is not valid JSON: {e}") from None


class CocoSplit:
    """One split of a COCO-format data set: ``split[i]`` is ``(image, target)``, images read on demand."""

    def __init__(self, json_path: Path, image_dir: Path, category_ids: list[int] | None = None) -> None:
        spec = _read_json(json_path)
        for key in ("images", "annotations", "categories"):
            if key not in spec:
                raise ValueError(f"coco: {json_path} has no {key!r} list")
        self.json_path, self.image_dir = json_path, image_dir
        self.category_ids = category_ids or sorted(c["id"] for c in spec["categories"])
        self.categories = {c["id"]: c["name"] for c in spec["categories"]}
        label_of = {cid: i + 1 for i, cid in enumerate(self.category_ids)}
        images = {im["id"]: im for im in spec["images"]}
        per_image: dict[int, list[dict]] = {i: [] for i in images}
        for ann in spec["annotations"]:
            aid, iid = ann.get("id"), ann.get("image_id")
            if iid not in images:
                raise ValueError(
                    f"coco: {json_path}: annotation {aid} names image_id {iid}, which is not listed"
                )
            if ann.get("category_id") not in label_of:
                raise ValueError(
                    f"coco: {json_path}: annotation {aid} has category_id {ann.get('category_id')}, "
                    "which is not among the categories"
                )
            x, y, w, h = ann["bbox"]
            im = images[iid]
            t = BOX_TOLERANCE
            if w <= 0 or h <= 0 or x < -t or y < -t or x + w > im["width"] + t or y + h > im["height"] + t:
                raise ValueError(
                    f"coco: {json_path}: annotation {aid} has bbox {ann['bbox']} outside image {iid} "
                    f"({im['width']}x{im['height']}, {im['file_name']})"
                )
            if not ann.get("iscrowd", 0):
                per_image[iid].append(ann)
        missing = [im["file_name"] for im in images.values() if not (image_dir / im["file_name"]).is_file()]
        if missing:
            raise FileNotFoundError(
                f"coco: {len(missing)} image(s) that {json_path} lists are missing from {image_dir}, "
                f"e.g. {missing[0]!r}"
            )
        self.label_of = label_of
        self.items = [(images[i], anns) for i, anns in per_image.items() if anns]
        self.skipped_empty = len(images) - len(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        from PIL import Image
        from pycocotools import mask as mask_utils

        info, anns = self.items[index]
        path = self.image_dir / info["file_name"]
        try:
            with Image.open(path) as im:
                rgb = im.convert("RGB")
        except OSError as e:
            raise ValueError(f"coco: cannot read image {path}: {e}") from None
        h, w = info["height"], info["width"]
        if rgb.size != (w, h):
            raise ValueError(f"coco: image {path} is {rgb.size[0]}x{rgb.size[1]}, the JSON says {w}x{h}")
        image = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(h, w, 3).permute(2, 0, 1)
        masks, boxes, labels = [], [], []
        for a in anns:
            seg = a.get("segmentation")
            if isinstance(seg, list):  # polygons
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
            elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):  # uncompressed RLE
                rle = mask_utils.frPyObjects(seg, h, w)
            elif isinstance(seg, dict):
                rle = seg
            else:
                raise ValueError(f"coco: {self.json_path}: annotation {a.get('id')} has no segmentation")
            with warnings.catch_warnings():  # pycocotools' numpy-2 copy= notice, once per mask
                warnings.simplefilter("ignore", DeprecationWarning)
                masks.append(torch.from_numpy(mask_utils.decode(rle)))
            x, y, bw, bh = a["bbox"]
            boxes.append([max(0.0, x), max(0.0, y), min(float(w), x + bw), min(float(h), y + bh)])
            labels.append(self.label_of[a["category_id"]])
        target = {
            "boxes": torch.tensor(boxes, dtype=torch.float32),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "masks": torch.stack(masks).to(torch.uint8),
        }
        return image.contiguous(), target


def load_coco(text: str) -> DetectionData:
    """The data set of spec ``coco:ROOT[,train=NAME,val=NAME]`` (``text`` is what follows ``coco:``)."""
    root_text, *options = text.split(",")
    if not root_text:
        raise ValueError("coco: give the data set's root, e.g. coco:data/coco")
    names = {"train": "train2017", "val": "val2017"}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or key not in names or not value:
            raise ValueError(f"coco: unknown option {item!r}; options are train=NAME, val=NAME")
        names[key] = value
    root = Path(root_text)
    if not root.is_dir():
        raise FileNotFoundError(f"coco: data root {root} is not a directory")
    train = CocoSplit(root / "annotations" / f"instances_{names['train']}.json", root / names["train"])
    test = CocoSplit(
        root / "annotations" / f"instances_{names['val']}.json", root / names["val"], train.category_ids
    )
    skipped = {
        "train images without annotations": train.skipped_empty,
        "val images without annotations": test.skipped_empty,
    }
    classes = [train.categories[c] for c in train.category_ids]
    return DetectionData(f"coco:{root}", classes, train, test, skipped)


def load_detection_data(spec: str, data_root: str | None = None, *, download: bool = True) -> DetectionData:
    """``scenes[:OPTIONS]`` (generated, see :mod:`.scenes`) or ``coco:ROOT[,OPTIONS]`` (COCO-format from disk)."""
    from groupnorm.repro.detection.scenes import load_scenes

    if spec == "scenes" or spec.startswith("scenes:"):
        return load_scenes(spec.partition(":")[2], data_root, download=download)
    if spec.startswith("coco:"):
        return load_coco(spec.partition(":")[2])
    raise ValueError(f"dataset: unknown detection data set {spec!r}; give scenes[:OPTIONS] or coco:ROOT")
