"""Fine-tune (or train from scratch) one Mask R-CNN variant, in rounds of steps that survive SIGKILL.

A step takes ``devices × images_per_device`` images in an order fixed by (seed, epoch) (the classification
sweep's :func:`~groupnorm.repro.runtime.epoch_order`); the loss is the sum of Mask R-CNN's losses averaged over
them. BatchNorm statistics are per virtual device (``DeviceBatchNorm2d``), and under torchrun the step's images
are split over the processes (DDP averages the gradients; :func:`~groupnorm.repro.runtime.average_buffers` the
BN running statistics). After each round: a checkpoint, then box/mask AP on the test split (rank 0). The loop,
its checkpoints and its records are the one training loop's (:class:`~groupnorm.repro.loop.Trainer`).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from groupnorm.repro.detection.config import DetectionConfig
from groupnorm.repro.detection.data import DetectionData, normalize_image
from groupnorm.repro.detection.evaluate import evaluate_model
from groupnorm.repro.detection.model import backbone_norm, build_maskrcnn
from groupnorm.repro.loop import Trainer
from groupnorm.repro.runtime import epoch_order


class _Subset:
    def __init__(self, split, n: int) -> None:
        self.split, self.n = split, min(n, len(split))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.split[i]


class DetectionTrainer(Trainer):
    """One detection run; ``run()`` resumes from ``run_dir`` (see :class:`~groupnorm.repro.loop.Trainer`)."""

    def __init__(self, cfg: DetectionConfig, data: DetectionData, run_dir, **kw) -> None:
        super().__init__(cfg, run_dir, **kw)
        if cfg.images_per_step > len(data.train):
            raise ValueError(
                f"a step of devices × images_per_device = {cfg.images_per_step} images exceeds the "
                f"{len(data.train)} training images"
            )
        self.cfg, self.data = cfg, data
        self.test = data.test if cfg.test_images is None else _Subset(data.test, cfg.test_images)
        torch.manual_seed(cfg.seed)
        canvas = int(data.train[0][0].shape[-1])
        model, self.backbone_origin = build_maskrcnn(cfg, data.num_classes, canvas)
        self.backbone_norm = backbone_norm(cfg)
        # RoIs without a positive sample leave the mask head unused in a step
        self.attach(model.to(self.device), find_unused_parameters=True)

    def steps_per_round(self) -> int:
        return self.cfg.steps_per_round

    def round_line(self, stats: dict) -> str:
        return (
            f"step {stats['step']}/{self.cfg.steps}, loss {stats['train_loss']:.3f}, box AP {stats['box_ap']:.2f}, "
            f"mask AP {stats['mask_ap']:.2f} ({stats['seconds']:.0f}s)"
        )

    def describe(self) -> dict:
        return {
            "grouping": self.grouping,
            "backbone_init": self.backbone_origin,
            "backbone_norm": self.backbone_norm,
        }

    def _images_of_step(self, step: int) -> list[int]:
        """This process's share of the step's images: positions step·B .. step·B + B of the endless epoch stream."""
        n, b = len(self.data.train), self.cfg.images_per_step
        positions = range(step * b, (step + 1) * b)
        local = b // self.dist.world
        mine = list(positions)[self.dist.rank * local : (self.dist.rank + 1) * local]
        orders: dict[int, torch.Tensor] = {}
        out = []
        for p in mine:
            epoch = p // n
            if epoch not in orders:
                orders[epoch] = epoch_order(n, self.cfg.seed, epoch)
            out.append(int(orders[epoch][p % n]))
        return out

    def train_round(self, r: int) -> dict:
        cfg = self.cfg
        self.ddp.train()
        steps = range(r * cfg.steps_per_round, min(cfg.steps, (r + 1) * cfg.steps_per_round))
        sums: dict[str, float] = {}
        for i, step in enumerate(steps):
            items = [self.data.train[j] for j in self._images_of_step(step)]
            images = [normalize_image(im).to(self.device) for im, _ in items]
            targets = [{k: v.to(self.device) for k, v in t.items()} for _, t in items]
            losses = self.ddp(images, targets)
            value = self.optimize(sum(losses.values()), cfg.lr_at(step), r, i, len(steps))
            sums["train_loss"] = sums.get("train_loss", 0.0) + value
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
        stats = {k: v / len(steps) for k, v in sums.items()}
        stats.update({"step": steps[-1] + 1, "lr": cfg.lr_at(steps[-1])})
        return stats

    def evaluate(self) -> dict:
        metrics = {}
        if self.dist.main:
            metrics = evaluate_model(self.model, self.test, self.data.num_classes, device=self.device)
        if self.dist.world > 1:
            box = [metrics]
            dist.broadcast_object_list(box, src=0)
            metrics = box[0]
        return metrics
