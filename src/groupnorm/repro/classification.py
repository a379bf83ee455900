"""One classification run (the paper's §4 and §5): the model, its data, an epoch of steps and the evaluation, on
the one training loop (:class:`~groupnorm.repro.loop.Trainer`, whose rounds are epochs here).

A step takes ``devices × batch_per_device`` images, in an order fixed by (seed, epoch); the loss is their mean, so
the gradient is the average over all of them (what DDP's all-reduce gives K real devices). Under torchrun the
step's images are split evenly over the processes, each holding ``devices / world_size`` virtual devices.

Files of a run (``run_dir``): ``checkpoint.pt`` (after every epoch: weights, optimizer, the epoch records),
``epochs.jsonl`` (those records, rewritten from the checkpoint), ``result.json`` (written once the run is done;
its numbers are the median over the final epochs, :func:`run_summary`).
"""

from __future__ import annotations

import os
import statistics
import time

import torch
from torch import nn

from groupnorm.repro.hparams import HParams
from groupnorm.repro.image_data import ImageData
from groupnorm.repro.loop import Trainer
from groupnorm.repro.model import build_model

MEDIAN_OF_LAST = 5  # the paper reports the median validation error of the last 5 of its 100 epochs


def final_epochs(epochs: int) -> int:
    """How many final epochs a run's result is the median of: the paper's last 5 of 100, i.e. the last 5 %,
    at least one and at most 5. A 10-epoch cosine run is judged on its last epoch, not on epochs 6-10, whose
    learning rate is still half the peak.

    >>> [final_epochs(e) for e in (6, 10, 30, 60, 100, 300)]
    [1, 1, 2, 3, 5, 5]
    """
    return max(1, min(MEDIAN_OF_LAST, round(epochs / 20)))


def run_summary(records: list[dict]) -> dict:
    """Final numbers of a run from its epoch records: the median over its :func:`final_epochs`."""
    epochs = records[-1].get("config", {}).get("epochs", len(records)) if records else 0
    last = records[-final_epochs(epochs) :]
    return {
        "val_error": statistics.median(r["val_error"] for r in last),
        "train_error": statistics.median(r["train_error"] for r in last),
        "train_loss": statistics.median(r["train_loss"] for r in last),
        "seconds_per_epoch": statistics.mean(r["seconds"] for r in records),
        "epochs_done": len(records),
    }


class ClassificationTrainer(Trainer):
    """One classification run. ``run()`` resumes from ``run_dir``; see :class:`~groupnorm.repro.loop.Trainer`.

    Example::

        data = load_dataset("digits", train_subset=256)
        hp = HParams(dataset="digits", model="resnet8", norm="gn", devices=2, batch_per_device=8, epochs=2)
        result = ClassificationTrainer(hp, data, "runs/one", device="cpu").run()   # result["val_error"]
    """

    unit = "epoch"
    restore_rng = False  # the data order and augmentation are functions of (seed, epoch) alone
    records_train_seconds = False  # its records have the training throughput instead (``images_per_second``)

    def __init__(self, hp: HParams, data: ImageData, run_dir: str | os.PathLike, **kw) -> None:
        super().__init__(hp, run_dir, **kw)
        self.hp, self.data = hp, data
        self.steps_per_epoch = data.num_train // hp.global_batch
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"a step of devices × batch_per_device = {hp.global_batch} images exceeds the "
                f"{data.num_train} training images"
            )
        if hp.norm == "syncbn" and self.dist.world > 1 and self.device.type != "cuda":
            raise ValueError(
                "norm 'syncbn' under torchrun needs CUDA (torch's SyncBatchNorm does not run on CPU/gloo); "
                "run it in one process, where it is exact: --devices K emulates K devices"
            )
        torch.manual_seed(hp.seed)
        self.memory_format = torch.channels_last if hp.channels_last else torch.contiguous_format
        model = build_model(hp, data.num_classes, data.image_shape[0]).to(self.device)
        model = model.to(memory_format=self.memory_format)
        if hp.norm == "syncbn" and self.dist.world > 1:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.attach(model)

    def steps_per_round(self) -> int:
        return self.steps_per_epoch

    def record_config(self) -> dict:
        return {**self.hp.to_dict(), "grouping": self.grouping}

    def describe(self) -> dict:
        return {}  # the grouping is in the config (as the committed records have it)

    def summarize(self, records: list[dict]) -> dict:
        return run_summary(records)

    def train_round(self, epoch: int) -> dict:
        hp, data = self.hp, self.data
        t0 = time.perf_counter()
        stats = self.classification_round(
            epoch,
            num_train=data.num_train,
            per_step=hp.global_batch,
            steps=self.steps_per_epoch,
            fetch=lambda index: data.train_batch(index, hp.seed, epoch),
            memory_format=self.memory_format,
        )
        # training throughput, evaluation excluded (the report's images-per-second table)
        stats["images_per_second"] = self.steps_per_epoch * hp.global_batch / (time.perf_counter() - t0)
        return stats

    def evaluate(self) -> dict:
        """``val_error``: the error in percent over the whole test set (each process takes an equal share)."""
        return self.classification_error(self.data.test_batches(self.hp.eval_batch), self.memory_format)
