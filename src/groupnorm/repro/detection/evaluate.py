"""COCO box and mask AP with pycocotools: ground truth from the targets, predictions from the model.

``coco_metrics(targets, predictions, sizes)`` takes torchvision's formats (targets: ``boxes`` x1y1x2y2, ``labels``,
``masks`` (n, H, W); predictions: ``boxes``, ``labels``, ``scores``, ``masks`` (n, 1, H, W) probabilities or
(n, H, W)) and returns ``box_ap``, ``box_ap50``, ``mask_ap``, ``mask_ap50`` in percent (COCO's AP over IoU
0.50:0.95 and at IoU 0.5).

>>> import torch
>>> t = {"boxes": torch.tensor([[2., 2., 10., 12.]]), "labels": torch.tensor([1]),
...      "masks": torch.zeros(1, 16, 16, dtype=torch.uint8)}
>>> t["masks"][0, 2:12, 2:10] = 1
>>> p = {**t, "scores": torch.tensor([0.9])}
>>> coco_metrics([t], [p], [(16, 16)], num_classes=2)["mask_ap"]
100.0
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch

METRICS = ("box_ap", "box_ap50", "mask_ap", "mask_ap50")


def _rle(mask: torch.Tensor) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.numpy().astype(np.uint8)))
    rle["counts"] = rle["counts"].decode()
    return rle


def _xywh(box: torch.Tensor) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def coco_ground_truth(targets: list[dict], sizes: list[tuple[int, int]], num_classes: int) -> dict:
    """A COCO ``instances`` dict of the targets (image ids 1..N, category ids 1..num_classes-1)."""
    images, annotations = [], []
    for i, (t, (h, w)) in enumerate(zip(targets, sizes), start=1):
        images.append({"id": i, "height": h, "width": w, "file_name": f"{i}.png"})
        for box, label, mask in zip(t["boxes"], t["labels"], t["masks"]):
            annotations.append({
                "id": len(annotations) + 1, "image_id": i, "category_id": int(label), "bbox": _xywh(box),
                "area": float(mask.sum()), "iscrowd": 0, "segmentation": _rle(mask > 0),
            })  # fmt: skip
    categories = [{"id": c, "name": str(c)} for c in range(1, num_classes)]
    return {"images": images, "annotations": annotations, "categories": categories}


def coco_detections(predictions: list[dict], mask_threshold: float = 0.5) -> list[dict]:
    """COCO result entries (bbox and segmentation) of torchvision's predictions, image ids 1..N."""
    out = []
    for i, p in enumerate(predictions, start=1):
        masks = p["masks"]
        if masks.dim() == 4:
            masks = masks[:, 0]
        for box, label, score, mask in zip(p["boxes"], p["labels"], p["scores"], masks):
            out.append({"image_id": i, "category_id": int(label), "bbox": _xywh(box), "score": float(score),
                        "segmentation": _rle(mask >= mask_threshold)})  # fmt: skip
    return out


def coco_metrics(
    targets: list[dict], predictions: list[dict], sizes: list[tuple[int, int]], num_classes: int
) -> dict[str, float]:
    """Box and mask AP (0.50:0.95) and AP50, in percent; 0 where there is nothing to score."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(targets) != len(predictions) or len(targets) != len(sizes):
        raise ValueError(
            f"targets, predictions and sizes must have one entry per image, got {len(targets)}, "
            f"{len(predictions)}, {len(sizes)}"
        )
    detections = coco_detections(predictions)
    result = dict.fromkeys(METRICS, 0.0)
    if not detections:
        return result
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and tables
        gt = COCO()
        gt.dataset = coco_ground_truth(targets, sizes, num_classes)
        gt.createIndex()
        dt = gt.loadRes(detections)
        for kind, name in (("bbox", "box"), ("segm", "mask")):
            ev = COCOeval(gt, dt, kind)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            # stats[0]: AP at IoU 0.50:0.95, stats[1]: AP at 0.5; -1 when no ground truth exists
            result[f"{name}_ap"] = round(max(0.0, float(ev.stats[0])) * 100, 4)
            result[f"{name}_ap50"] = round(max(0.0, float(ev.stats[1])) * 100, 4)
    return result


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, split, num_classes: int, batch: int = 8, device=None) -> dict:
    """The metrics of ``model`` (eval mode) over every image of ``split``."""
    from groupnorm.repro.detection.data import normalize_image

    model.eval()
    device = device or next(model.parameters()).device
    targets, predictions, sizes = [], [], []
    for start in range(0, len(split), batch):
        items = [split[i] for i in range(start, min(len(split), start + batch))]
        outs = model([normalize_image(im).to(device) for im, _ in items])
        for (im, t), o in zip(items, outs):
            targets.append(t)
            predictions.append({k: v.cpu() for k, v in o.items()})
            sizes.append(tuple(im.shape[1:]))
    return coco_metrics(targets, predictions, sizes, num_classes)
