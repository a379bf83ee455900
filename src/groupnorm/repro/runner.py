"""The one runner of every experiment: a list of runs under one folder, each resumable, never losing work.

This module alone decides whether a run is finished, which process trains it, and writes the summaries:

- **Finished**: a run is finished when ``runs/<id>/result.json`` says all its epochs or rounds are done
  (:func:`is_finished`); a finished run is skipped.
- **Locked**: the process that trains a run holds an exclusive ``flock`` on ``runs/<id>/.lock`` (the kernel drops
  it if the process dies), so several workers share one sweep and each run is trained by one of them.
- **Resumed**: the trainer (:class:`~groupnorm.repro.loop.Trainer`) restarts from ``runs/<id>/checkpoint.pt``.
- **Summarized**: ``results.jsonl`` (every epoch or round record of every run) and ``summary.csv`` (one row per
  finished run) are rewritten atomically from the per-run files after every epoch or round (:func:`write_summary`).

Layout of ``out``::

    out/meta.json            the command, the sweep, machine and versions
    out/runs/<id>/           checkpoint.pt, epochs.jsonl or rounds.jsonl, result.json of each run
    out/results.jsonl        every record of every run
    out/summary.csv          one row per finished run

Example::

    jobs = [Job(cfg.run_id(), cfg.rounds, functools.partial(MyTrainer, cfg)) for cfg in cfgs]
    results = run_jobs(jobs, "runs/x", fields=["run", "val_error"], records="rounds.jsonl", meta={"sweep": ...})
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch.distributed as dist

from groupnorm.repro.progress import Progress
from groupnorm.repro.runtime import (
    Dist,
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    machine_info,
    read_jsonl,
)


@dataclass(frozen=True)
class Job:
    """One run of a sweep: its folder name, how many epochs or rounds it has, and how to build its trainer.

    ``make_trainer(run_dir, progress=..., log=..., on_round=...)`` returns an object whose ``run()`` trains
    (resuming from ``run_dir``) and returns the result it also wrote to ``run_dir/result.json``."""

    run_id: str
    rounds: int
    make_trainer: Callable


def is_finished(result: dict | None, rounds: int) -> bool:
    """Whether a run's ``result.json`` says all of its ``rounds`` epochs or rounds are done.

    >>> is_finished({"epochs_done": 10}, 10), is_finished({"rounds_done": 3, "complete": False}, 4)
    (True, False)
    """
    if not result:
        return False
    return result.get("epochs_done", result.get("rounds_done")) == rounds


def read_result(run_dir: str | os.PathLike) -> dict | None:
    """A run's ``result.json``, or None when it has none."""
    path = Path(run_dir) / "result.json"
    return json.loads(path.read_text()) if path.exists() else None


def try_lock(run_dir: Path):
    """An exclusive lock on a run, or None if another process holds it (the kernel drops it if we die)."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): one process per sweep
        return open(run_dir / ".lock", "a")  # noqa: SIM115
    f = open(run_dir / ".lock", "a")  # noqa: SIM115 - held open for the whole run
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    return f


def write_summary(out: str | os.PathLike, run_ids: list[str], fields: list[str], records: str) -> list[dict]:
    """Rewrite ``results.jsonl`` (every record of the runs' ``records`` files) and ``summary.csv`` (columns
    ``fields``, one row per run with a ``result.json``); return those results."""
    out = Path(out)
    rows, results = [], []
    for rid in run_ids:
        rows += read_jsonl(out / "runs" / rid / records)
        result = read_result(out / "runs" / rid)
        if result is not None:
            results.append(result)
    atomic_write_jsonl(out / "results.jsonl", rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    for r in results:
        w.writerow({**r["config"], **r})
    atomic_write_text(out / "summary.csv", buf.getvalue())
    return results


def command_line() -> str:
    """The command this process runs, as a shell line: ``groupnorm repro ...`` however the program was started
    (``groupnorm``, ``python -m groupnorm``, torchrun), else the interpreter's arguments."""
    if sys.argv[1:2] == ["repro"]:
        return "groupnorm " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return " ".join(shlex.quote(a) for a in sys.argv)


def run_jobs(
    jobs: list[Job],
    out: str | os.PathLike,
    *,
    fields: list[str],
    records: str,
    meta: dict,
    quiet: bool = False,
    command: str | None = None,
    describe: Callable[[dict], str] = lambda r: "done",
    intro: tuple[str, ...] = (),
) -> list[dict]:
    """Run (or resume) every job under ``out/runs/<run_id>``; return the results of the finished runs and of those
    this process trained, in job order. ``describe(result)`` is the progress line of a finished run, ``intro``
    lines printed before the first run."""
    out = Path(out)
    me = Dist.current()
    # a run listed twice (`--norms gn,gn`) is one run: the same id is the same settings
    jobs = list({job.run_id: job for job in jobs}.values())
    run_ids = [job.run_id for job in jobs]
    progress = Progress(len(jobs), quiet=quiet, enabled=me.main)
    if me.main:
        out.mkdir(parents=True, exist_ok=True)
        full = {
            "command": command or command_line(),
            **meta,
            "machine": machine_info(),
            "world_size": me.world,
        }
        atomic_write_json(out / "meta.json", full)
        for line in (*intro, f"{len(jobs)} runs -> {out}"):
            progress.write(line)
    results = []
    for job in jobs:
        run_dir = out / "runs" / job.run_id
        if me.world > 1:
            dist.barrier()
        result = read_result(run_dir)
        if is_finished(result, job.rounds):
            results.append(result)
            progress.end_run(f"{job.run_id}: done before, {describe(result)}")
            continue
        if me.main:
            run_dir.mkdir(parents=True, exist_ok=True)
        if me.world > 1:
            dist.barrier()  # the folder exists before any process opens a file in it
        lock = try_lock(run_dir) if me.world == 1 else None
        if me.world == 1 and lock is None:
            progress.end_run(f"{job.run_id}: being trained by another process, skipped")
            continue
        try:
            trainer = job.make_trainer(
                run_dir,
                progress=progress,
                log=progress.warn,
                on_round=lambda: write_summary(out, run_ids, fields, records),
            )
            result = trainer.run()
        finally:
            if lock is not None:
                lock.close()
        results.append(result)
        progress.end_run(f"{job.run_id}: {describe(result)}")
    progress.close()
    if me.main:
        write_summary(out, run_ids, fields, records)
    return results


def run_configs(
    configs: list,
    out: str | os.PathLike,
    make_trainer: Callable,
    *,
    fields: list[str],
    meta: dict | None = None,
    quiet: bool = False,
    describe: Callable[[dict], str] = lambda r: "done",
) -> list[dict]:
    """:func:`run_jobs` over a list of run configs whose records are rounds (the transfer experiments): each run's
    trainer is ``make_trainer(config, run_dir, progress=..., log=..., on_round=...)``; ``meta.json`` holds every
    config (``sweep``), the first (``base``) and ``meta``."""
    jobs = [Job(c.run_id(), c.rounds, functools.partial(make_trainer, c)) for c in configs]
    full = {"sweep": [c.to_dict() for c in configs], "base": configs[0].to_dict(), **(meta or {})}
    return run_jobs(
        jobs, out, fields=fields, records="rounds.jsonl", meta=full, quiet=quiet, describe=describe
    )
