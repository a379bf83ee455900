"""A run in rounds that survives SIGKILL: the checkpoint-and-resume loop shared by the transfer experiments.

A subclass builds ``self.model`` and ``self.optimizer`` and implements ``train_round(r)`` (train, return a
dict of statistics) and ``evaluate()`` (return a dict of metrics); ``run()`` then resumes from
``run_dir/checkpoint.pt``, trains the remaining rounds and after each one writes the checkpoint (weights,
optimizer, round records; checksummed, atomic) and then ``rounds.jsonl``, and at the end ``result.json`` with the
last round's metrics, the machine and ``complete: true``. As in :mod:`groupnorm.repro.train`, a kill between the
two writes leaves ``rounds.jsonl`` one round behind and the resumed run rewrites it from the checkpoint, so no
round is missing or repeated; the checkpoint also holds torch's random state, so a resumed run continues exactly
as an uninterrupted one. A checkpoint of other hyper-parameters, or a damaged one, restarts the run.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from groupnorm.repro.checkpoint import atomic_write_json, atomic_write_jsonl, resume_run, save_run
from groupnorm.repro.train import Dist, machine_info


class RoundTrainer:
    """Base class: ``config`` has ``to_dict()`` and ``rounds``; see the module docstring."""

    model = None
    optimizer = None

    def __init__(
        self, config, run_dir: str | os.PathLike, *, progress=None, log=print, on_round=None
    ) -> None:
        self.config, self.run_dir = config, Path(run_dir)
        self.dist = Dist.current()
        self.progress, self.on_round = progress, on_round
        self.log = log if self.dist.main else (lambda *a, **k: None)

    # subclasses --------------------------------------------------------------------------------------------------
    def train_round(self, r: int) -> dict:
        raise NotImplementedError

    def evaluate(self) -> dict:
        raise NotImplementedError

    def steps_per_round(self) -> int:
        raise NotImplementedError

    def round_line(self, stats: dict) -> str:
        """What the progress output says after a round without a ``val_error``."""
        return f"loss {stats.get('train_loss', float('nan')):.3f} ({stats['seconds']:.1f}s)"

    def describe(self) -> dict:
        """Extra fields of every record and of the result (e.g. the normalization actually used)."""
        return {}

    # the loop ---------------------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def _resume(self) -> list[dict]:
        # Mask R-CNN samples anchors and RoIs with torch's generator: a resumed run continues it exactly
        return resume_run(
            self.run_dir, self.config.to_dict(), self.model, self.optimizer, main=self.dist.main, log=self.log,
            restore_rng=True,
        )  # fmt: skip

    def _save(self, records: list[dict]) -> None:
        if self.dist.main:
            save_run(
                self.run_dir,
                self.config.to_dict(),
                self.model,
                self.optimizer,
                records,
                "rounds.jsonl",
                rng=True,
            )

    def run(self) -> dict:
        """Train the remaining rounds; return the result (also written to ``result.json``)."""
        records = self._resume()
        rounds = self.config.rounds
        if self.dist.main:
            atomic_write_jsonl(self.run_dir / "rounds.jsonl", records)
        if records:
            self.log(f"resuming {self.run_dir.name} after round {len(records)}/{rounds}")
        if self.progress is not None:
            self.progress.start_run(self.run_dir.name, rounds, self.steps_per_round(), len(records))
        for r in range(len(records), rounds):
            t0 = time.perf_counter()
            stats = self.train_round(r)
            stats["train_seconds"] = time.perf_counter() - t0
            stats.update(self.evaluate())
            stats["seconds"] = time.perf_counter() - t0
            records.append({"run": self.run_dir.name, "round": r + 1, "config": self.config.to_dict(),
                            **self.describe(), **stats})  # fmt: skip
            self._save(records)
            if self.progress is not None:
                if "val_error" in stats:  # a classification round: the sweep's own epoch line and bar
                    self.progress.epoch_done(r + 1, stats)
                else:
                    self.progress.write(
                        f"{self.run_dir.name} round {r + 1}/{rounds}: {self.round_line(stats)}"
                    )
            if self.on_round is not None and self.dist.main:
                self.on_round()
        last = records[-1] if records else {}
        result = {
            **{k: v for k, v in last.items() if k not in ("round", "seconds", "train_seconds")},
            "run": self.run_dir.name,
            "config": self.config.to_dict(),
            "rounds_done": len(records),
            "seconds_per_step": statistics.mean(r["train_seconds"] for r in records) / self.steps_per_round()
            if records else 0.0,
            "machine": machine_info(),
            "world_size": self.dist.world,
            "complete": len(records) == rounds,
        }  # fmt: skip
        if self.dist.main:
            atomic_write_json(self.run_dir / "result.json", result)
        return result
