"""Train one 3-D ResNet on clips, epoch by epoch (one round each), resuming after SIGKILL.

A step takes ``devices × clips_per_device`` clips in an order fixed by (seed, epoch); BN statistics are per virtual
device; under torchrun the step's clips are split over the processes. The epoch, the evaluation, the checkpoints
and the records are the one training loop's (:class:`~groupnorm.repro.loop.Trainer`), shared with classification.
"""

from __future__ import annotations

import torch

from groupnorm.repro.loop import Trainer
from groupnorm.repro.video.config import VideoConfig
from groupnorm.repro.video.data import ClipData
from groupnorm.repro.video.model import build_video_model


class VideoTrainer(Trainer):
    """One video run; ``run()`` resumes from ``run_dir`` (see :class:`~groupnorm.repro.loop.Trainer`)."""

    def __init__(self, cfg: VideoConfig, data: ClipData, run_dir, **kw) -> None:
        super().__init__(cfg, run_dir, **kw)
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
        self.attach(model.to(self.device, memory_format=self.memory_format))

    def steps_per_round(self) -> int:
        return self.steps

    def train_round(self, epoch: int) -> dict:
        return self.classification_round(
            epoch,
            num_train=self.data.num_train,
            per_step=self.cfg.clips_per_step,
            steps=self.steps,
            fetch=self.data.train_batch,
            memory_format=self.memory_format,
        )

    def evaluate(self) -> dict:
        return self.classification_error(self.data.test_batches(self.cfg.eval_batch), self.memory_format)
