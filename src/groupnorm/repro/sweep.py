"""The classification sweep: the grid norm × grouping × batch per device × seed (:class:`SweepSpec`), run on the
one runner (:mod:`groupnorm.repro.runner`: finished runs skipped, unfinished ones resumed, runs locked by the
process training them, ``results.jsonl`` and ``summary.csv`` rewritten after every epoch), then the report
(``out/report.md`` and its plots, :mod:`groupnorm.repro.report`). Each run is a
:class:`~groupnorm.repro.classification.ClassificationTrainer`; ``summary.csv``'s val error is the median of a
run's final epochs.

Example::

    spec = SweepSpec(base=HParams(dataset="digits", epochs=6), norms=["bn", "gn"], batch_per_device=[32, 4])
    results = run_sweep(spec, out="runs/demo")
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from groupnorm.repro.classification import ClassificationTrainer
from groupnorm.repro.data import load_dataset
from groupnorm.repro.hparams import HParams
from groupnorm.repro.runner import Job, run_jobs
from groupnorm.repro.runtime import Dist

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


SUMMARY_FIELDS = [
    "run", "norm", "groups", "group_size", "batch_per_device", "devices", "seed", "epochs_done",
    "val_error", "train_error", "train_loss", "seconds_per_epoch", "grouping",
]  # fmt: skip


def describe_result(result: dict) -> str:
    """A finished run's progress line."""
    return (
        f"val error {result['val_error']:.2f}% (median of the final epochs), train error "
        f"{result['train_error']:.2f}%, {result['seconds_per_epoch']:.1f} s/epoch"
    )


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

    def job(hp: HParams) -> Job:
        return Job(
            hp.run_id(),
            hp.rounds,
            lambda run_dir, **kw: ClassificationTrainer(hp, data, run_dir, device=device, **kw),
        )

    d = data.describe()
    intro = (f"data: {d['name']}: {d['train']} train / {d['test']} test images {tuple(d['image_shape'])}",)
    results = run_jobs(
        [job(hp) for hp in spec.runs()], out, fields=SUMMARY_FIELDS, records="epochs.jsonl",
        meta={"sweep": spec.to_dict()}, quiet=quiet, command=command, describe=describe_result, intro=intro,
    )  # fmt: skip
    if Dist.current().main and report:
        from groupnorm.repro.report import report_summary, write_report

        path = write_report(out)
        print(report_summary(path), flush=True)
        print(f"report: {path}", flush=True)
    return results
