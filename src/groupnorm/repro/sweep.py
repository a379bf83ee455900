"""A sweep: the grid norm × grouping × batch per device × seed, run one after another, never losing work.

Layout of ``out``::

    out/meta.json            the command, the sweep, machine and versions
    out/runs/<run>/          checkpoint.pt, epochs.jsonl, result.json of each run (see train.py)
    out/results.jsonl        every epoch record of every run, regenerated atomically after each epoch
    out/summary.csv          one row per finished run (val error = median of its last 5 % of epochs)
    out/report.md, *.png     written at the end (groupnorm.repro.report)

Rerunning the same command skips finished runs and resumes unfinished ones from their last epoch. Several
processes may work on one sweep at once (e.g. two single-thread processes on two cores): each run is locked by
the process training it and skipped by the others; the last one to finish writes the complete report.

Example::

    spec = SweepSpec(base=HParams(dataset="digits", epochs=6), norms=["bn", "gn"], batch_per_device=[32, 4])
    results = run_sweep(spec, out="runs/demo")
"""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch.distributed as dist

from groupnorm.repro.checkpoint import atomic_write_json, atomic_write_jsonl, atomic_write_text
from groupnorm.repro.data import load_dataset
from groupnorm.repro.hparams import HParams
from groupnorm.repro.progress import Progress
from groupnorm.repro.train import Dist, RunTrainer, machine_info

GN_NORMS = ("gn", "gn+ws")


@dataclass
class SweepSpec:
    """What to run: ``base`` hyper-parameters and the lists each run takes one value from."""

    base: HParams = field(default_factory=HParams)
    norms: list[str] = field(default_factory=lambda: ["bn", "gn"])
    batch_per_device: list[int] = field(default_factory=lambda: [32])
    groups: list[int] = field(default_factory=list)  # GN group counts to try (Table 3, left)
    group_sizes: list[int] = field(default_factory=list)  # GN channels per group to try (Table 3, right)
    seeds: int = 1
    # per-norm images-per-device lists replacing ``batch_per_device`` for that norm (e.g. LN and IN only at 32,
    # as the paper's Table 1), so a CPU budget is spent on the cells the paper compares
    batch_for_norm: dict[str, list[int]] = field(default_factory=dict)
    # images per device at which the group ablation (``groups``/``group_sizes``) runs; empty: every batch size.
    # The main GN grouping is the base's (``base.groups``/``base.group_size``), run at every batch size.
    ablation_batch: list[int] = field(default_factory=list)
    # seeds per cell at some batch sizes (e.g. {32: 2, 2: 2}) for the norms run at every batch size (Figure 1's),
    # main groupings only; ``seeds`` everywhere else
    seeds_at: dict[int, int] = field(default_factory=dict)
    data_root: str | None = None
    download: bool = True

    def _groupings(self, norm: str) -> list[tuple[int | None, int | None, bool]]:
        """(groups, group_size, is_ablation) of every grouping a norm runs with."""
        main = (self.base.groups, self.base.group_size)
        if norm not in GN_NORMS:
            return [(None, None, False)]
        if not (self.groups or self.group_sizes):
            return [(*main, False)]
        ablation = [(g, None) for g in self.groups] + [(None, s) for s in self.group_sizes]
        if main == (None, None) and not self.ablation_batch:
            return [(*g, False) for g in ablation]  # a plain grouping sweep: every grouping is a main row
        if norm != "gn":  # the ablation is GN's (Table 3); GN+WS takes the main grouping only
            return [(*main, False)]
        return [(*main, False)] + [(*g, True) for g in ablation if g != main]

    def runs(self) -> list[HParams]:
        """Every configuration of the grid, in the order they run.

        First seed before further seeds, main cells before ablation cells, then batch sizes in the order given
        (so ``32,2,16,8,4`` finishes the cells the paper compares first), then norms in the order given. The norms
        with a batch list of their own (``batch_for_norm``: Table 1's LN, IN, GN+WS at 32) come right after the
        first two batch sizes of the others (Figure 1's two ends), before the rest of Figure 1.
        """
        keyed = []
        for ni, norm in enumerate(self.norms):
            batches = self.batch_for_norm.get(norm, self.batch_per_device)
            for groups, size, ablation in self._groupings(norm):
                for b in batches:
                    if ablation and self.ablation_batch and b not in self.ablation_batch:
                        continue
                    seeds = self.seeds
                    if norm not in self.batch_for_norm and not ablation:
                        seeds = self.seeds_at.get(b, self.seeds)
                    for si, seed in enumerate(range(self.base.seed, self.base.seed + seeds)):
                        hp = replace(
                            self.base,
                            norm=norm,
                            groups=groups,
                            group_size=size,
                            batch_per_device=b,
                            seed=seed,
                        )
                        if norm in self.batch_for_norm:
                            slot, extra = min(2, len(self.batch_per_device)), 0
                        else:
                            slot = (
                                self.batch_per_device.index(b) if b in self.batch_per_device else len(batches)
                            )
                            extra = 1
                        keyed.append(((si > 0, ablation, slot, extra, ni), hp))
        keyed.sort(key=lambda kv: kv[0])  # stable: equal keys keep the grid's order
        return [hp for _, hp in keyed]

    def to_dict(self) -> dict:
        return {
            "base": self.base.to_dict(),
            "norms": self.norms,
            "batch_per_device": self.batch_per_device,
            "groups": self.groups,
            "group_sizes": self.group_sizes,
            "seeds": self.seeds,
            "batch_for_norm": self.batch_for_norm,
            "ablation_batch": self.ablation_batch,
            "seeds_at": {str(b): n for b, n in self.seeds_at.items()},
        }


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


SUMMARY_FIELDS = [
    "run", "norm", "groups", "group_size", "batch_per_device", "devices", "seed", "epochs_done",
    "val_error", "train_error", "train_loss", "seconds_per_epoch", "grouping",
]  # fmt: skip


def aggregate(out: str | os.PathLike, run_ids: list[str]) -> list[dict]:
    """Rewrite ``results.jsonl`` and ``summary.csv`` from the per-run files; return the finished results."""
    out = Path(out)
    records, results = [], []
    for rid in run_ids:
        records += read_jsonl(out / "runs" / rid / "epochs.jsonl")
        res = out / "runs" / rid / "result.json"
        if res.exists():
            results.append(json.loads(res.read_text()))
    atomic_write_jsonl(out / "results.jsonl", records)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, extrasaction="ignore")
    w.writeheader()
    for r in results:
        w.writerow({**r["config"], **r})
    atomic_write_text(out / "summary.csv", buf.getvalue())
    return results


def _try_lock(run_dir: Path):
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


def run_sweep(
    spec: SweepSpec,
    out: str | os.PathLike,
    *,
    quiet: bool = False,
    command: str | None = None,
    report: bool = True,
    device: str = "auto",
) -> list[dict]:
    """Run (or resume) every run of ``spec`` under ``out``; write the aggregate files and the report."""
    out = Path(out)
    me = Dist.current()
    runs = spec.runs()
    run_ids = [hp.run_id() for hp in runs]
    # the data first: a data set that cannot be had fails before a progress bar or anything under `out`
    base = spec.base
    data = load_dataset(
        base.dataset,
        spec.data_root,
        download=spec.download,
        train_subset=base.train_subset,
        test_subset=base.test_subset,
        image_size=base.image_size,
    )
    if base.val_split is not None:
        data = data.validation_split(base.val_split)
    progress = Progress(len(runs), quiet=quiet, enabled=me.main)
    if me.main:
        out.mkdir(parents=True, exist_ok=True)
        meta = {
            "command": command or " ".join(shlex.quote(a) for a in sys.argv),
            "sweep": spec.to_dict(),
            "machine": machine_info(),
            "world_size": me.world,
        }
        atomic_write_json(out / "meta.json", meta)
        d = data.describe()
        progress.write(
            f"data: {d['name']}: {d['train']} train / {d['test']} test images {tuple(d['image_shape'])}"
        )
        progress.write(f"{len(runs)} runs -> {out}")
    results = []
    for hp, rid in zip(runs, run_ids):
        run_dir = out / "runs" / rid
        done = run_dir / "result.json"
        if me.world > 1:
            dist.barrier()
        if done.exists():
            result = json.loads(done.read_text())
            if result.get("config", {}).get("epochs") == hp.epochs and result.get("epochs_done") == hp.epochs:
                results.append(result)
                progress.end_run(f"{rid}: done before, val error {result['val_error']:.2f}%")
                continue
        if me.main:
            run_dir.mkdir(parents=True, exist_ok=True)
        lock = _try_lock(run_dir) if me.world == 1 else None
        if me.world == 1 and lock is None:
            progress.end_run(f"{rid}: being trained by another process, skipped")
            continue
        trainer = RunTrainer(
            hp,
            data,
            run_dir,
            progress=progress,
            log=progress.warn,
            on_epoch=lambda: aggregate(out, run_ids),
            device=device,
        )
        try:
            result = trainer.run()
        finally:
            if lock is not None:
                lock.close()
        results.append(result)
        progress.end_run(
            f"{rid}: val error {result['val_error']:.2f}% (median of the final epochs), train error "
            f"{result['train_error']:.2f}%, {result['seconds_per_epoch']:.1f} s/epoch"
        )
    progress.close()
    if me.main:
        aggregate(out, run_ids)
        if report:
            from groupnorm.repro.report import report_summary, write_report

            path = write_report(out)
            print(report_summary(path), flush=True)
            print(f"report: {path}", flush=True)
    return results
