"""``groupnorm repro classification`` (also plain ``groupnorm repro``): the paper's batch-size sweep, norm
comparison and group ablation (Figure 1, Table 1, Table 3) at any scale, or ``report DIR`` to (re)write a report.

Without a preset a sweep runs the paper's ImageNet protocol on a small model: ResNet-20 on digits, BN and GN at 32
images per device, 8 virtual devices, 100 epochs. The presets size it to a machine:

    groupnorm repro --preset demo --out runs/demo                                # ~5 minutes, two CPU cores
    groupnorm repro --preset cifar10-cpu --data-root data/cifar10 --print-config  # what it would run
    groupnorm repro --dataset cifar10 --data-root data/cifar10 --norms bn,gn --batch-per-device 32,2 \\
        --devices 4 --epochs 30 --out runs/c10
    torchrun --nproc_per_node 2 -m groupnorm repro --preset demo --out runs/demo-ddp   # the same, 2 processes
    groupnorm repro report runs/demo

The transfer experiments: ``groupnorm repro detection --help`` (Mask R-CNN, §6.1) and ``groupnorm repro video
--help`` (3-D ResNets on clips, §6.2). Rerunning a command resumes it, also after SIGKILL; several processes may
share one sweep.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import fields

from groupnorm.repro.config_flags import (
    SEEDS,
    SweepFlag,
    add_config_flags,
    add_sweep_flags,
    int_pairs,
    list_of,
    positive_int,
)
from groupnorm.repro.experiment_command import (
    Experiment,
    Plan,
    new_parser,
    overlay,
    plan_from_args,
    run_experiment,
)
from groupnorm.repro.hparams import NORMS, HParams
from groupnorm.repro.presets import PRESETS

# settings that are not one HParams field: the sweep's lists and per-norm/per-batch variations
GRID_KEYS = ("norms", "batch_per_device", "seeds", "threads", "ablation_batch", "seeds_at")
# HParams switches whose flags are spelled as the paper's options (--no-decay-norm, --zero-init-last on|off, ...)
SWITCHES = ("decay_norm_params", "zero_init_last", "channels_last")
# HParams fields whose flags are not the field's own: the sweep's lists, and the switches
SKIP = ("norm", "groups", "group_size", "batch_per_device", *SWITCHES)
# flags whose help says more than the field's comment in HParams
HELP = {
    "dataset": "digits, textures[:key=value,...], cifar10, cifar100, mnist, fashion-mnist, imagefolder:PATH, "
    "npz:PATH",
    "model": "a CIFAR-style resnet<6n+2> (resnet8, resnet20, ...) or resnet18/34/50/101",
}


def _seeds_at(text: str) -> dict[int, int]:
    """``32:2,2:2`` -> {32: 2, 2: 2}."""
    return dict(int_pairs(":", "BATCH:SEEDS", "32:2,2:2")(text))


SWEEP_FLAGS = (
    SweepFlag("--norms", list_of(str, NORMS), f"comma-separated, from {','.join(NORMS)}", ["bn", "gn"]),
    SweepFlag("--batch-per-device", list_of(int), "images per device, e.g. 32,16,8,4,2", [32]),
    SweepFlag("--groups", list_of(int), "GN group counts to sweep, e.g. 64,32,16 (Table 3)", "none"),
    SweepFlag(
        "--group-size",
        list_of(int),
        "GN channels per group to sweep, e.g. 16,8 (Table 3)",
        "none",
        "group_sizes",
    ),
    SweepFlag(
        "--gn-groups", positive_int, "the main GN grouping: this many groups in every layer", "the model's"
    ),
    SweepFlag("--gn-group-size", positive_int, "the main GN grouping: this many channels per group", "none"),
    SweepFlag(
        "--ablation-batch", list_of(int), "images per device of --groups/--group-size", "every batch size"
    ),
    SEEDS,
    SweepFlag("--seeds-at", _seeds_at, "seeds per cell at some batch sizes, e.g. 32:2,2:2", {}),
)


def build_parser(values: dict, preset: str | None) -> argparse.ArgumentParser:
    """The parser of ``groupnorm repro classification``; its help shows the defaults of ``values`` (a preset's)."""
    p = new_parser("groupnorm repro classification", __doc__, PRESETS, preset, out="runs/<preset or dataset>")
    p.add_argument("--data-root", help="where the dataset lies (default $GROUPNORM_DATA/<name>)")
    p.add_argument("--no-download", action="store_true", help="never download; read only local files")
    add_sweep_flags(p.add_argument_group("sweep"), SWEEP_FLAGS, values)
    g = p.add_argument_group("training")
    add_config_flags(g, HParams, skip=SKIP, help_of=HELP, defaults=values, preset=preset)
    on_off = {k: "on" if values.get(k, HParams.__dataclass_fields__[k].default) else "off" for k in SWITCHES}
    g.add_argument(
        "--no-decay-norm",
        action="store_true",
        help=f"no weight decay on norm gamma/beta (weight decay on them: {on_off['decay_norm_params']})",
    )
    g.add_argument(
        "--zero-init-last",
        choices=["on", "off"],
        help=f"gamma = 0 in each residual block's last norm (default {on_off['zero_init_last']})",
    )
    g.add_argument(
        "--channels-last",
        action="store_true",
        help=f"train in channels_last memory format (default {on_off['channels_last']})",
    )
    return p


def settings(args: argparse.Namespace) -> dict:
    """Preset values overridden by the flags given; a grouping flag replaces the preset's grouping."""
    merged = overlay(args, PRESETS, HParams, GRID_KEYS, skip=SKIP)
    if args.groups is not None or args.group_size is not None:
        merged.pop("groups", None)
        merged.pop("group_sizes", None)
    if args.gn_groups is not None or args.gn_group_size is not None:
        merged.pop("gn_groups", None)
        merged.pop("gn_group_size", None)
        merged.update({k: getattr(args, k) for k in ("gn_groups", "gn_group_size") if getattr(args, k)})
    if args.groups is not None:
        merged["groups"] = args.groups
    if args.group_size is not None:
        merged["group_sizes"] = args.group_size
    if args.no_decay_norm:
        merged["decay_norm_params"] = False
    if args.channels_last:
        merged["channels_last"] = True
    if args.zero_init_last is not None:
        merged["zero_init_last"] = args.zero_init_last == "on"
    return merged


def build_spec(args: argparse.Namespace, s: dict):
    """The sweep of the settings ``s`` (see :func:`settings`)."""
    from groupnorm.repro.sweep import SweepSpec

    scalar = {f.name for f in fields(HParams)} - {"groups", "group_size", "batch_per_device", "norm"}
    base_kw = {k: v for k, v in s.items() if k in scalar}
    base_kw["groups"], base_kw["group_size"] = s.get("gn_groups"), s.get("gn_group_size")
    base = HParams(**base_kw)
    return SweepSpec(
        base=base,
        norms=s.get("norms", ["bn", "gn"]),
        batch_per_device=s.get("batch_per_device", [base.batch_per_device]),
        groups=s.get("groups", []),
        group_sizes=s.get("group_sizes", []),
        seeds=s.get("seeds", 1),
        # a preset's per-norm batch lists hold only while --batch-per-device is not given
        batch_for_norm={} if args.batch_per_device is not None else s.get("batch_for_norm", {}),
        ablation_batch=s.get("ablation_batch", []),
        seeds_at=s.get("seeds_at", {}),
        data_root=args.data_root,
        download=not args.no_download,
    )


def plan(args: argparse.Namespace, s: dict) -> Plan:
    spec = build_spec(args, s)
    out = args.out or os.path.join(
        "runs", args.preset or spec.base.dataset.replace(":", "_").replace("/", "_")
    )
    return Plan(runs=spec.runs(), out=out, shown={"sweep": spec.to_dict()}, payload=spec)


def spec_from_args(argv: list[str]):
    """The sweep that ``groupnorm repro ARGV`` would run, e.g. ``spec_from_args(["--preset", "demo"])``."""
    return plan_from_args(EXPERIMENT, argv).payload


def check(args: argparse.Namespace, plan: Plan) -> None:
    """What can be checked before the sweep draws a progress bar or writes under ``--out``: the device, the data
    set and the data root (``ValueError`` naming the flag; see :mod:`groupnorm.repro.preflight`)."""
    from groupnorm.repro import preflight

    preflight.check_data_flags(args, plan.payload.base.dataset, preflight.check_image_dataset)


def run(args: argparse.Namespace, plan: Plan) -> None:
    from groupnorm.repro.sweep import run_sweep

    run_sweep(plan.payload, plan.out, quiet=args.quiet, report=False, device=args.run_on)


def write_report(out: str) -> str:
    """Write ``out/report.md`` and its plots, print its findings; return its path."""
    from groupnorm.repro.report import report_summary
    from groupnorm.repro.report import write_report as write

    path = write(out)
    print(report_summary(path), flush=True)
    return str(path)


EXPERIMENT = Experiment(
    name="classification",
    config_cls=HParams,
    presets=PRESETS,
    grid_keys=GRID_KEYS,
    skip=SKIP,
    build_parser=build_parser,
    plan=plan,
    run=run,
    write_report="groupnorm.repro.classification_command:write_report",
    check=check,
    custom_settings=settings,
)


def main(argv: list[str]) -> int:
    """``groupnorm repro classification ARGV``; returns the exit status."""
    return run_experiment(EXPERIMENT, argv)
