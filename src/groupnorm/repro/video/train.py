"""Train one 3-D ResNet on clips, epoch by epoch (one round each), resuming after SIGKILL.

A step takes ``devices × clips_per_device`` clips in an order fixed by (seed, epoch)
(:func:`~groupnorm.repro.train.epoch_order`); BN statistics are per virtual device; under torchrun the step's
clips are split over the processes (DDP, and :func:`~groupnorm.repro.devices.average_buffers` for BN buffers).
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from groupnorm.repro.devices import average_buffers
from groupnorm.repro.model import grouping_label
from groupnorm.repro.rounds import RoundTrainer
from groupnorm.repro.train import epoch_order, param_groups, pick_device
from groupnorm.repro.video.config import VideoConfig
from groupnorm.repro.video.data import ClipData
from groupnorm.repro.video.model import build_video_model


class VideoTrainer(RoundTrainer):
    """One video run; ``run()`` resumes from ``run_dir`` (see :class:`~groupnorm.repro.rounds.RoundTrainer`)."""

    def __init__(self, cfg: VideoConfig, data: ClipData, run_dir, *, device: str = "auto", **kw) -> None:
        super().__init__(cfg, run_dir, **kw)
        if cfg.devices % self.dist.world:
            raise ValueError(
                f"devices={cfg.devices} cannot be spread evenly over {self.dist.world} processes"
            )
        if data.clip_shape[1] != cfg.frames:
            raise ValueError(
                f"the data's clips have {data.clip_shape[1]} frames, the run wants frames={cfg.frames}"
            )
        self.steps = data.num_train // cfg.clips_per_step
        if self.steps == 0:
            raise ValueError(
                f"a step of devices × clips_per_device = {cfg.clips_per_step} clips exceeds the "
                f"{data.num_train} training clips"
            )
        self.cfg, self.data = cfg, data
        self.device = pick_device(device, self.dist.rank)
        self.memory_format = torch.channels_last_3d if cfg.channels_last else torch.contiguous_format
        torch.manual_seed(cfg.seed)
        model = build_video_model(
            cfg.model,
            norm=cfg.norm,
            num_classes=data.num_classes,
            clips_per_device=cfg.clips_per_device,
            width=cfg.width,
            gn_groups=cfg.gn_groups,
        )
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.grouping = grouping_label(self.model)
        self.optimizer = torch.optim.SGD(param_groups(self.model, _Decay(cfg.weight_decay)), lr=cfg.lr,
                                         momentum=cfg.momentum)  # fmt: skip
        self.ddp = self.model
        if self.dist.world > 1:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                self.ddp = nn.parallel.DistributedDataParallel(self.model, broadcast_buffers=False)

    def steps_per_round(self) -> int:
        return self.steps

    def describe(self) -> dict:
        return {"grouping": self.grouping}

    def train_round(self, epoch: int) -> dict:
        cfg = self.cfg
        self.ddp.train()
        order = epoch_order(self.data.num_train, cfg.seed, epoch)
        local = cfg.clips_per_step // self.dist.world
        sums = torch.zeros(3, dtype=torch.float64)
        for step in range(self.steps):
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.lr_at(epoch + step / self.steps)
            batch = order[step * cfg.clips_per_step : (step + 1) * cfg.clips_per_step]
            x, y = self.data.train_batch(batch[self.dist.rank * local : (self.dist.rank + 1) * local])
            x, y = x.to(self.device, memory_format=self.memory_format), y.to(self.device)
            logits = self.ddp(x)
            loss = F.cross_entropy(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            average_buffers(self.model)
            value = float(loss.detach())
            sums += torch.tensor(
                [value * len(y), float((logits.argmax(1) != y).sum()), len(y)], dtype=torch.float64
            )
            if self.progress is not None:
                self.progress.step(epoch, step, self.steps, value)
            if not math.isfinite(value):
                self.log(f"warning: run {self.run_dir.name}: loss is {value} at epoch {epoch + 1}")
        sums = self._all_reduce(sums)
        return {"train_loss": float(sums[0] / sums[2]), "train_error": float(100 * sums[1] / sums[2]),
                "lr": cfg.lr_at(epoch)}  # fmt: skip

    @torch.no_grad()
    def evaluate(self) -> dict:
        self.model.eval()
        counts = torch.zeros(2, dtype=torch.float64)
        for i, (x, y) in enumerate(self.data.test_batches(self.cfg.eval_batch)):
            if i % self.dist.world != self.dist.rank:
                continue
            logits = self.model(x.to(self.device, memory_format=self.memory_format))
            counts += torch.tensor([float((logits.argmax(1).cpu() != y).sum()), len(y)], dtype=torch.float64)
        counts = self._all_reduce(counts)
        return {"val_error": float(100 * counts[0] / counts[1])}

    def _all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        if self.dist.world == 1:
            return t
        on_device = t.to(self.device)
        dist.all_reduce(on_device)
        return on_device.cpu()


class _Decay:
    """What :func:`~groupnorm.repro.train.param_groups` reads: weight decay on every weight (the paper's)."""

    decay_norm_params = True

    def __init__(self, weight_decay: float) -> None:
        self.weight_decay = weight_decay
