"""Run a list of resumable runs under one directory, never losing work: the sweep runner of the transfer
experiments (detection, video), sharing the classification sweep's run locks, atomic files and progress bars.

Each job is ``(run_id, make_trainer)``; ``make_trainer(run_dir, progress, on_round)`` returns an object whose
``run()`` trains (resuming from ``run_dir``) and returns the result that it also wrote to ``run_dir/result.json``.
A run with a ``result.json`` of the same config is skipped, one locked by another process is left to it, and
``out/summary.csv`` (columns ``fields``) and ``out/results.jsonl`` are rewritten after every round of every run.

Example::

    jobs = [(cfg.run_id(), lambda run_dir, progress, on_round, cfg=cfg: Trainer(cfg, run_dir, ...)) for cfg in cfgs]
    results = run_grid(jobs, "runs/detection", fields=["run", "variant", "box_ap"], meta={"sweep": ...})
"""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import torch.distributed as dist

from groupnorm.repro.checkpoint import atomic_write_json, atomic_write_jsonl, atomic_write_text
from groupnorm.repro.progress import Progress
from groupnorm.repro.sweep import _try_lock, read_jsonl
from groupnorm.repro.train import Dist, machine_info

Job = tuple[str, Callable]


def write_summary(out: str | os.PathLike, run_ids: list[str], fields: list[str]) -> list[dict]:
    """Rewrite ``results.jsonl`` (every round record) and ``summary.csv`` (one row per finished run)."""
    out = Path(out)
    records, results = [], []
    for rid in run_ids:
        records += read_jsonl(out / "runs" / rid / "rounds.jsonl")
        res = out / "runs" / rid / "result.json"
        if res.exists():
            results.append(json.loads(res.read_text()))
    atomic_write_jsonl(out / "results.jsonl", records)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    for r in results:
        w.writerow({**r["config"], **r})
    atomic_write_text(out / "summary.csv", buf.getvalue())
    return results


def run_grid(
    jobs: list[Job],
    out: str | os.PathLike,
    *,
    fields: list[str],
    meta: dict,
    quiet: bool = False,
    command: str | None = None,
    describe: Callable[[dict], str] = lambda r: "done",
) -> list[dict]:
    """Run (or resume) every job under ``out/runs/<run_id>``; return the finished results in job order."""
    out = Path(out)
    me = Dist.current()
    run_ids = [rid for rid, _ in jobs]
    if len(set(run_ids)) != len(run_ids):
        raise ValueError(f"two runs of the grid have the same configuration: {run_ids}")
    progress = Progress(len(jobs), quiet=quiet, enabled=me.main)
    if me.main:
        out.mkdir(parents=True, exist_ok=True)
        full = {"command": command or " ".join(shlex.quote(a) for a in sys.argv), **meta,
                "machine": machine_info(), "world_size": me.world}  # fmt: skip
        atomic_write_json(out / "meta.json", full)
        progress.write(f"{len(jobs)} runs -> {out}")
    results = []
    for rid, make_trainer in jobs:
        run_dir = out / "runs" / rid
        if me.world > 1:
            dist.barrier()
        done = run_dir / "result.json"
        if done.exists():
            result = json.loads(done.read_text())
            if result.get("complete"):
                results.append(result)
                progress.end_run(f"{rid}: done before, {describe(result)}")
                continue
        if me.main:
            run_dir.mkdir(parents=True, exist_ok=True)
        if me.world > 1:
            dist.barrier()
        lock = _try_lock(run_dir) if me.world == 1 else None
        if me.world == 1 and lock is None:
            progress.end_run(f"{rid}: being trained by another process, skipped")
            continue
        try:
            trainer = make_trainer(run_dir, progress, lambda: write_summary(out, run_ids, fields))
            result = trainer.run()
        finally:
            if lock is not None:
                lock.close()
        results.append(result)
        progress.end_run(f"{rid}: {describe(result)}")
    progress.close()
    if me.main:
        write_summary(out, run_ids, fields)
    return results
