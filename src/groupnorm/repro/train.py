"""Train and evaluate one run, top to bottom, resuming from its checkpoint.

A step takes ``devices × batch_per_device`` images, in an order fixed by (seed, epoch); the loss is their mean, so
the gradient is the average over all of them (what DDP's all-reduce gives K real devices). Under torchrun the
step's images are split evenly over the processes, each holding ``devices / world_size`` virtual devices.

Files of a run (``run_dir``): ``checkpoint.pt`` (after every epoch: weights, optimizer, the epoch records),
``epochs.jsonl`` (those records, rewritten from the checkpoint), ``result.json`` (written once the run is done).
The checkpoint is written first: a process killed between the two writes leaves ``epochs.jsonl`` one epoch behind,
and the resumed run rewrites it from the checkpoint, so no epoch is ever missing or duplicated.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from groupnorm import machine
from groupnorm.repro.checkpoint import atomic_write_json, atomic_write_jsonl, resume_run, save_run
from groupnorm.repro.data import ImageData
from groupnorm.repro.devices import average_buffers
from groupnorm.repro.hparams import HParams
from groupnorm.repro.model import build_model, grouping_label

MEDIAN_OF_LAST = 5  # the paper reports the median validation error of the last 5 of its 100 epochs


def final_epochs(epochs: int) -> int:
    """How many final epochs a run's result is the median of: the paper's last 5 of 100, i.e. the last 5 %,
    at least one and at most 5. A 10-epoch cosine run is judged on its last epoch, not on epochs 6-10, whose
    learning rate is still half the peak.

    >>> [final_epochs(e) for e in (6, 10, 30, 60, 100, 300)]
    [1, 1, 2, 3, 5, 5]
    """
    return max(1, min(MEDIAN_OF_LAST, round(epochs / 20)))


@dataclass(frozen=True)
class Dist:
    """Where this process stands: rank and world size (1 without torchrun)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @staticmethod
    def current() -> Dist:
        if dist.is_available() and dist.is_initialized():
            return Dist(dist.get_rank(), dist.get_world_size())
        return Dist()


def machine_info() -> dict:
    """Machine and versions, recorded with every result."""
    info = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        **machine.describe(),
        "torch_threads": torch.get_num_threads(),
        "device": "cpu",
    }
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
    try:
        import groupnorm

        info["groupnorm"] = getattr(groupnorm, "__version__", None) or _package_version()
    except Exception:  # noqa: BLE001
        pass
    return info


def _package_version() -> str:
    from groupnorm._version import __version__

    return __version__


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


def param_groups(model: nn.Module, hp: HParams) -> list[dict]:
    """Weight decay on every weight, or on all but the normalization layers' gamma/beta."""
    if hp.decay_norm_params:
        return [
            {"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": hp.weight_decay}
        ]
    norm_params = {
        id(p) for m in model.modules() if "Norm" in type(m).__name__ for p in m.parameters(recurse=False)
    }
    decay = [p for p in model.parameters() if p.requires_grad and id(p) not in norm_params]
    no_decay = [p for p in model.parameters() if p.requires_grad and id(p) in norm_params]
    return [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the training images in an epoch: a function of (seed, epoch) only."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def pick_device(device: str, rank: int) -> torch.device:
    """``auto`` (CUDA when there is one), ``cpu`` or ``cuda``; under torchrun the local rank's GPU."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device")
    if device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", rank))  # torchrun sets it per node
    d = torch.device("cuda", local_rank % torch.cuda.device_count())
    torch.cuda.set_device(d)
    return d


class RunTrainer:
    """One run: the model, its optimizer and the loop over epochs. ``run()`` resumes from ``run_dir``."""

    def __init__(
        self,
        hp: HParams,
        data: ImageData,
        run_dir: str | os.PathLike,
        *,
        progress=None,
        log=print,
        on_epoch=None,
        device: str = "auto",
    ):
        self.hp, self.data, self.run_dir = hp, data, Path(run_dir)
        self.on_epoch = on_epoch
        self.dist = Dist.current()
        self.log = log if self.dist.main else (lambda *a, **k: None)
        self.progress = progress
        if hp.devices % self.dist.world:
            raise ValueError(f"devices={hp.devices} cannot be spread evenly over {self.dist.world} processes")
        self.steps_per_epoch = data.num_train // hp.global_batch
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"a step of devices × batch_per_device = {hp.global_batch} images exceeds the "
                f"{data.num_train} training images"
            )
        if hp.norm == "syncbn" and self.dist.world > 1 and (device == "cpu" or not torch.cuda.is_available()):
            raise ValueError(
                "norm 'syncbn' under torchrun needs CUDA (torch's SyncBatchNorm does not run on CPU/gloo); "
                "run it in one process, where it is exact: --devices K emulates K devices"
            )
        torch.manual_seed(hp.seed)
        self.device = pick_device(device, self.dist.rank)
        self.memory_format = torch.channels_last if hp.channels_last else torch.contiguous_format
        model = build_model(hp, data.num_classes, data.image_shape[0]).to(self.device)
        model = model.to(memory_format=self.memory_format)
        if hp.norm == "syncbn" and self.dist.world > 1:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        self.grouping = grouping_label(model)
        self.optimizer = torch.optim.SGD(param_groups(model, hp), lr=hp.lr, momentum=hp.momentum)
        # Gradients are averaged by DDP; BN running statistics are averaged by average_buffers after each step.
        self.ddp = model
        if self.dist.world > 1:
            with warnings.catch_warnings():
                # torch >= 2.14 renames broadcast_buffers; its replacement still syncs buffers at init, and
                # torch 2.11 lacks it. The buffers are identical at init here (same seed), so either is right.
                warnings.simplefilter("ignore", FutureWarning)
                self.ddp = nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)

    # ---- files -------------------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    @property
    def result_path(self) -> Path:
        return self.run_dir / "result.json"

    def config(self) -> dict:
        return {**self.hp.to_dict(), "grouping": self.grouping}

    def record(self, epoch: int, stats: dict) -> dict:
        return {"run": self.run_dir.name, "epoch": epoch, "config": self.config(), **stats}

    def _resume(self) -> list[dict]:
        return resume_run(
            self.run_dir, self.hp.to_dict(), self.model, self.optimizer, main=self.dist.main, log=self.log
        )

    def _save(self, records: list[dict]) -> None:
        if self.dist.main:
            save_run(self.run_dir, self.hp.to_dict(), self.model, self.optimizer, records, "epochs.jsonl")

    # ---- the loop ----------------------------------------------------------------------------------------------
    def run(self) -> dict:
        """Train the remaining epochs and return the run's result (also written to ``result.json``)."""
        records = self._resume()
        if self.dist.main:
            atomic_write_jsonl(self.run_dir / "epochs.jsonl", records)
        if records:
            self.log(f"resuming {self.run_dir.name} after epoch {len(records)}/{self.hp.epochs}")
        if self.progress is not None:
            self.progress.start_run(self.run_dir.name, self.hp.epochs, self.steps_per_epoch, len(records))
        for epoch in range(len(records), self.hp.epochs):
            t0 = time.perf_counter()
            train = self.train_epoch(epoch)
            train_seconds = time.perf_counter() - t0
            # training throughput, evaluation excluded (the report's images-per-second table)
            train["images_per_second"] = self.steps_per_epoch * self.hp.global_batch / train_seconds
            val_error = self.evaluate()
            stats = {**train, "val_error": val_error, "seconds": time.perf_counter() - t0}
            records.append(self.record(epoch + 1, stats))
            self._save(records)
            if self.progress is not None:
                self.progress.epoch_done(epoch + 1, stats)
            if self.on_epoch is not None and self.dist.main:
                self.on_epoch()
        result = {
            "run": self.run_dir.name,
            "config": self.config(),
            **run_summary(records),
            "machine": machine_info(),
            "world_size": self.dist.world,
        }
        if self.dist.main:
            atomic_write_json(self.result_path, result)
        return result

    def train_epoch(self, epoch: int) -> dict:
        hp, data = self.hp, self.data
        self.ddp.train()
        order = epoch_order(data.num_train, hp.seed, epoch)
        local = hp.global_batch // self.dist.world
        sums = torch.zeros(3, dtype=torch.float64)  # loss sum, errors, images
        for step in range(self.steps_per_epoch):
            lr = hp.lr_at(epoch + step / self.steps_per_epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            batch = order[step * hp.global_batch : (step + 1) * hp.global_batch]
            index = batch[self.dist.rank * local : (self.dist.rank + 1) * local]
            x, y = data.train_batch(index, hp.seed, epoch)
            x = x.to(self.device, memory_format=self.memory_format, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            logits = self.ddp(x)
            loss = F.cross_entropy(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            average_buffers(self.model)
            loss_value, n = float(loss.detach()), len(y)
            sums += torch.tensor(
                [loss_value * n, float((logits.argmax(1) != y).sum()), n], dtype=torch.float64
            )
            if self.progress is not None:
                self.progress.step(epoch, step, self.steps_per_epoch, loss_value)
            if not math.isfinite(loss_value):
                self.log(f"warning: run {self.run_dir.name}: loss is {loss_value} at epoch {epoch + 1}")
        sums = self._all_reduce(sums)
        return {
            "train_loss": float(sums[0] / sums[2]),
            "train_error": float(100 * sums[1] / sums[2]),
            "lr": hp.lr_at(epoch),
        }

    @torch.no_grad()
    def evaluate(self) -> float:
        """Validation error in percent over the whole test set (each process takes an equal share)."""
        self.model.eval()
        counts = torch.zeros(2, dtype=torch.float64)
        for i, (x, y) in enumerate(self.data.test_batches(self.hp.eval_batch)):
            if i % self.dist.world != self.dist.rank:
                continue
            logits = self.model(x.to(self.device, memory_format=self.memory_format))
            counts += torch.tensor([float((logits.argmax(1).cpu() != y).sum()), len(y)], dtype=torch.float64)
        counts = self._all_reduce(counts)
        return float(100 * counts[0] / counts[1])

    def _all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """Sum a small CPU tensor over the processes (through the device, as NCCL needs)."""
        if self.dist.world == 1:
            return t
        on_device = t.to(self.device)
        dist.all_reduce(on_device)
        return on_device.cpu()
