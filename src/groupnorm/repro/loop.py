"""The one training loop of every experiment: rounds of steps that survive SIGKILL.

A run is a config (a :class:`~groupnorm.repro.run_config.RunConfig`: ``to_dict()``, ``rounds``, ``lr``,
``momentum``, ``weight_decay``, ``devices``, ``seed``) and a folder. A task (classification, detection, video)
subclasses :class:`Trainer`: it builds its model and hands it to :meth:`Trainer.attach` (device, SGD, DDP), and
implements ``train_round(r)`` (train, return a dict of statistics), ``evaluate()`` (return a dict of metrics) and
``steps_per_round()``. Classification and video share :meth:`Trainer.classification_round` and
:meth:`Trainer.classification_error`; every task's step ends in :meth:`Trainer.optimize`.

``run()`` resumes from ``run_dir/checkpoint.pt``, trains the remaining rounds and after each one writes the
checkpoint (weights, optimizer, the round records, and torch's random state where the task samples with it;
checksummed, atomic) and then the records file, and at the end ``result.json``. A kill between the two writes
leaves the records file one round behind and the resumed run rewrites it from the checkpoint, so no round is
missing or repeated. A checkpoint of other settings, or a damaged one, restarts the run. Whether a run is
finished, and which process trains it, is the runner's (:mod:`groupnorm.repro.runner`).

A round is called an ``epoch`` in classification's records (``epochs.jsonl``, ``epochs_done``) and a ``round`` in
the transfer experiments' (``rounds.jsonl``, ``rounds_done``), as their committed results have them.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from groupnorm.repro.checkpoint import resume_run, save_run
from groupnorm.repro.model import grouping_label
from groupnorm.repro.runtime import (
    Dist,
    all_reduce_sum,
    atomic_write_json,
    atomic_write_jsonl,
    average_buffers,
    epoch_order,
    machine_info,
    param_groups,
    pick_device,
    wrap_ddp,
)


class Trainer:
    """Base class of one run's training; see the module docstring."""

    unit = "round"  # what a round is called in the records: "epoch" or "round"
    # the checkpoint keeps torch's random state (Mask R-CNN samples anchors and RoIs with it)
    restore_rng = True
    # records carry the round's training time (``train_seconds``, of which the result's time per step is made)
    records_train_seconds = True

    model: nn.Module
    optimizer: torch.optim.Optimizer

    def __init__(
        self,
        config,
        run_dir: str | os.PathLike,
        *,
        device: str = "auto",
        progress=None,
        log=print,
        on_round: Callable[[], object] | None = None,
    ) -> None:
        self.config, self.run_dir = config, Path(run_dir)
        self.dist = Dist.current()
        self.progress, self.on_round = progress, on_round
        self.log = log if self.dist.main else (lambda *a, **k: None)
        if config.devices % self.dist.world:
            raise ValueError(
                f"devices={config.devices} cannot be spread evenly over {self.dist.world} processes"
            )
        self.device = pick_device(device, self.dist.rank)

    def attach(self, model: nn.Module, *, find_unused_parameters: bool = False) -> None:
        """Train ``model`` (already on the device): SGD with the config's LR, momentum and weight decay, under
        DDP when several processes train it."""
        self.model = model
        self.grouping = grouping_label(model)
        self.optimizer = torch.optim.SGD(
            param_groups(model, self.config), lr=self.config.lr, momentum=self.config.momentum
        )
        self.ddp = wrap_ddp(model, find_unused_parameters=find_unused_parameters)

    # ---- what a task supplies ---------------------------------------------------------------------------------
    def train_round(self, r: int) -> dict:
        raise NotImplementedError

    def evaluate(self) -> dict:
        raise NotImplementedError

    def steps_per_round(self) -> int:
        raise NotImplementedError

    def round_line(self, stats: dict) -> str:
        """What the progress output says after a round without a ``val_error``."""
        return f"loss {stats.get('train_loss', float('nan')):.3f} ({stats['seconds']:.1f}s)"

    def record_config(self) -> dict:
        """The config as every record and the result carry it."""
        return self.config.to_dict()

    def describe(self) -> dict:
        """Extra fields of every record and of the result (e.g. the normalization actually used)."""
        return {"grouping": self.grouping}

    def summarize(self, records: list[dict]) -> dict:
        """The result's numbers: the last round's metrics, how many rounds are done, the time a step took."""
        last = records[-1] if records else {}
        return {
            **{k: v for k, v in last.items() if k not in ("round", "seconds", "train_seconds")},
            "rounds_done": len(records),
            "seconds_per_step": statistics.mean(r["train_seconds"] for r in records) / self.steps_per_round()
            if records
            else 0.0,
            "complete": len(records) == self.config.rounds,
        }

    # ---- files ------------------------------------------------------------------------------------------------
    @property
    def records_file(self) -> Path:
        return self.run_dir / f"{self.unit}s.jsonl"

    @property
    def result_path(self) -> Path:
        return self.run_dir / "result.json"

    def _resume(self) -> list[dict]:
        return resume_run(
            self.run_dir,
            self.config.to_dict(),
            self.model,
            self.optimizer,
            main=self.dist.main,
            log=self.log,
            restore_rng=self.restore_rng,
        )

    def _save(self, records: list[dict]) -> None:
        if self.dist.main:
            save_run(
                self.run_dir,
                self.config.to_dict(),
                self.model,
                self.optimizer,
                records,
                self.records_file.name,
                rng=self.restore_rng,
            )

    # ---- the loop ---------------------------------------------------------------------------------------------
    def run(self) -> dict:
        """Train the remaining rounds; return the result (also written to ``result.json``)."""
        records = self._resume()
        rounds = self.config.rounds
        if self.dist.main:
            atomic_write_jsonl(self.records_file, records)
        if records:
            self.log(f"resuming {self.run_dir.name} after {self.unit} {len(records)}/{rounds}")
        if self.progress is not None:
            self.progress.start_run(self.run_dir.name, rounds, self.steps_per_round(), len(records))
        for r in range(len(records), rounds):
            t0 = time.perf_counter()
            stats = self.train_round(r)
            if self.records_train_seconds:
                stats["train_seconds"] = time.perf_counter() - t0
            stats.update(self.evaluate())
            stats["seconds"] = time.perf_counter() - t0
            records.append(
                {
                    "run": self.run_dir.name,
                    self.unit: r + 1,
                    "config": self.record_config(),
                    **self.describe(),
                    **stats,
                }
            )
            self._save(records)
            if self.progress is not None:
                if "val_error" in stats:  # a classifier's round: the epoch line and bar
                    self.progress.epoch_done(r + 1, stats)
                else:
                    self.progress.write(
                        f"{self.run_dir.name} round {r + 1}/{rounds}: {self.round_line(stats)}"
                    )
            if self.on_round is not None and self.dist.main:
                self.on_round()
        result = {
            **self.summarize(records),
            "run": self.run_dir.name,
            "config": self.record_config(),
            "machine": machine_info(),
            "world_size": self.dist.world,
        }
        if self.dist.main:
            atomic_write_json(self.result_path, result)
        return result

    # ---- what the tasks' steps share --------------------------------------------------------------------------
    def optimize(self, loss: torch.Tensor, lr: float, r: int, step: int, steps: int) -> float:
        """One optimizer step on ``loss`` at learning rate ``lr``; BN buffers averaged over the processes; the
        progress bar moved. Returns the loss (a non-finite one is logged, not hidden)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        average_buffers(self.model)
        value = float(loss.detach())
        if self.progress is not None:
            self.progress.step(r, step, steps, value)
        if not math.isfinite(value):
            self.log(
                f"warning: run {self.run_dir.name}: loss is {value} at {self.unit} {r + 1}, step {step + 1}"
            )
        return value

    def classification_round(
        self,
        epoch: int,
        *,
        num_train: int,
        per_step: int,
        steps: int,
        fetch: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
        memory_format: torch.memory_format,
    ) -> dict:
        """An epoch of a classifier: ``steps`` steps of ``per_step`` examples in the order of
        :func:`~groupnorm.repro.runtime.epoch_order`, each process taking an equal share of a step (``fetch`` turns
        indices into inputs and labels); cross-entropy averaged over the step. Returns the epoch's loss, error and
        learning rate, summed over the processes."""
        cfg = self.config
        self.ddp.train()
        order = epoch_order(num_train, cfg.seed, epoch)
        local = per_step // self.dist.world
        sums = torch.zeros(3, dtype=torch.float64)  # loss sum, errors, examples
        for step in range(steps):
            batch = order[step * per_step : (step + 1) * per_step]
            x, y = fetch(batch[self.dist.rank * local : (self.dist.rank + 1) * local])
            x = x.to(self.device, memory_format=memory_format, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            logits = self.ddp(x)
            loss = F.cross_entropy(logits, y)
            value = self.optimize(loss, cfg.lr_at(epoch + step / steps), epoch, step, steps)
            sums += torch.tensor(
                [value * len(y), float((logits.argmax(1) != y).sum()), len(y)], dtype=torch.float64
            )
        sums = all_reduce_sum(sums, self.device)
        return {
            "train_loss": float(sums[0] / sums[2]),
            "train_error": float(100 * sums[1] / sums[2]),
            "lr": cfg.lr_at(epoch),
        }

    @torch.no_grad()
    def classification_error(
        self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], memory_format: torch.memory_format
    ) -> dict:
        """``val_error``: the error in percent over ``batches`` (each process takes an equal share)."""
        self.model.eval()
        counts = torch.zeros(2, dtype=torch.float64)
        for i, (x, y) in enumerate(batches):
            if i % self.dist.world != self.dist.rank:
                continue
            logits = self.model(x.to(self.device, memory_format=memory_format))
            counts += torch.tensor([float((logits.argmax(1).cpu() != y).sum()), len(y)], dtype=torch.float64)
        counts = all_reduce_sum(counts, self.device)
        return {"val_error": float(100 * counts[0] / counts[1])}
