"""``groupnorm repro detection``: Mask R-CNN fine-tuning at small batch, the paper's §6.1, at any scale.

Examples::

    groupnorm repro detection --preset detection-tiny --out runs/det-tiny            # a minute, generated shapes
    groupnorm repro detection --preset detection-cpu --data-root DIR \\
        --bn-backbone docs/results/cifar10-cpu/runs/bn_b32_.../checkpoint.pt \\
        --gn-backbone docs/results/cifar10-cpu/runs/gn-G8_b32_.../checkpoint.pt --out runs/det
    torchrun --nproc_per_node 8 -m groupnorm repro detection --preset coco --dataset coco:data/coco \\
        --bn-backbone runs/imagenet/runs/bn_b32_.../checkpoint.pt --gn-backbone ... --out runs/coco
    groupnorm repro detection report runs/det

Rerunning the same command resumes (also after SIGKILL); several processes may share one sweep.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from groupnorm.repro.config_flags import SEEDS, SweepFlag, add_config_flags, add_sweep_flags, list_of
from groupnorm.repro.detection.config import VARIANTS, DetectionConfig
from groupnorm.repro.detection.presets import PRESETS
from groupnorm.repro.experiment_command import (
    Experiment,
    Plan,
    default_out,
    new_parser,
    plan_from_args,
    run_experiment,
)

GRID_KEYS = ("variants", "images_per_device", "seeds", "threads")
SKIP = ("variant", "pretrained", "images_per_device")  # the grid's flags, and the backbone flags


SWEEP_FLAGS = (
    SweepFlag(
        "--variants", list_of(str, VARIANTS), f"comma-separated, from {','.join(VARIANTS)}", list(VARIANTS)
    ),
    SweepFlag("--images-per-device", list_of(int), "images per device, e.g. 2,1", [2]),
    SEEDS,
)


def build_parser(values: dict, preset: str | None) -> argparse.ArgumentParser:
    """The parser of ``groupnorm repro detection``; its help shows the defaults of ``values`` (a preset's)."""
    p = new_parser("groupnorm repro detection", __doc__, PRESETS, preset)
    p.add_argument("--data-root", help="CIFAR-10's directory for scenes:objects=cifar10")
    p.add_argument("--no-download", action="store_true", help="never download CIFAR-10")
    sweep = p.add_argument_group("sweep")
    add_sweep_flags(sweep, SWEEP_FLAGS, values)
    sweep.add_argument(
        "--bn-backbone", help="checkpoint.pt of a BN classification run (BN* and BN; default: random)"
    )
    sweep.add_argument(
        "--gn-backbone", help="checkpoint.pt of a GN classification run (GN variants; default: random)"
    )
    add_config_flags(p.add_argument_group("run"), DetectionConfig, skip=SKIP, defaults=values, preset=preset)
    return p


def plan(args: argparse.Namespace, s: dict) -> Plan:
    """The runs, in order (variant-major within a batch size)."""
    base = DetectionConfig(**{k: v for k, v in s.items() if k not in GRID_KEYS})
    backbone = {
        "bn_frozen": args.bn_backbone,
        "bn_finetune": args.bn_backbone,
        "gn_backbone": args.gn_backbone,
        "gn_all": args.gn_backbone,
    }
    runs = [
        replace(base, variant=v, images_per_device=b, seed=seed, pretrained=backbone.get(v))
        for b in s.get("images_per_device", [base.images_per_device])
        for v in s.get("variants", list(VARIANTS))
        for seed in range(base.seed, base.seed + s.get("seeds", 1))
    ]
    return Plan(runs=runs, out=default_out(args, "detection"), shown={"configs": [c.to_dict() for c in runs]})


def configs_from_args(argv: list[str]) -> list[DetectionConfig]:
    """The runs ``groupnorm repro detection ARGV`` would train, in order."""
    return plan_from_args(EXPERIMENT, argv).runs


BACKBONE_FLAGS = {"bn": "--bn-backbone", "gn": "--gn-backbone"}  # the backbone norm each flag gives


def check(args: argparse.Namespace, plan: Plan) -> None:
    """Device, data set, data root and the backbone checkpoints, before anything is drawn or written: a checkpoint
    of the wrong norm or architecture fails now, not when its variant's run comes up hours into the sweep."""
    from groupnorm.repro import preflight
    from groupnorm.repro.detection.model import checked_backbone, needs_pretrained_norm

    preflight.check_data_flags(args, plan.runs[0].dataset, preflight.check_detection_dataset)
    for norm, flag in BACKBONE_FLAGS.items():
        path = getattr(args, f"{norm}_backbone")
        if path is not None:  # also when no chosen variant uses it: the user meant something by it
            preflight.check_checkpoint(path, flag)
    checked = set()
    for cfg in plan.runs:
        wanted = needs_pretrained_norm(cfg.variant)
        if cfg.pretrained is None or wanted is None or (cfg.pretrained, wanted) in checked:
            continue
        checked.add((cfg.pretrained, wanted))
        try:
            checked_backbone(cfg)  # loads it: norm, architecture, a readable checkpoint
        except (ValueError, FileNotFoundError) as e:
            raise preflight.flagged(BACKBONE_FLAGS[wanted], cfg.pretrained, e) from None


def run(args: argparse.Namespace, plan: Plan) -> None:
    from groupnorm.repro.detection.coco import load_detection_data
    from groupnorm.repro.detection.report import SUMMARY_FIELDS
    from groupnorm.repro.detection.train import DetectionTrainer
    from groupnorm.repro.preflight import dataset_value, flagged
    from groupnorm.repro.runner import run_configs

    spec = plan.runs[0].dataset
    try:  # before run_jobs: nothing is drawn or written for data that cannot be had
        data = load_detection_data(spec, args.data_root, download=not args.no_download)
    except (ValueError, FileNotFoundError) as e:
        raise flagged("--dataset", dataset_value(spec, args.dataset, args.preset), e) from None

    run_configs(
        plan.runs, plan.out,
        lambda cfg, run_dir, **kw: DetectionTrainer(cfg, data, run_dir, device=args.run_on, **kw),
        fields=SUMMARY_FIELDS, meta={"data": data.describe()}, quiet=args.quiet,
        describe=lambda r: f"box AP {r.get('box_ap', 0):.2f}, mask AP {r.get('mask_ap', 0):.2f}",
    )  # fmt: skip


EXPERIMENT = Experiment(
    name="detection",
    config_cls=DetectionConfig,
    presets=PRESETS,
    grid_keys=GRID_KEYS,
    skip=SKIP,
    build_parser=build_parser,
    plan=plan,
    run=run,
    write_report="groupnorm.repro.detection.report:write_detection_report",
    check=check,
    errors=(ValueError, FileNotFoundError),
)


def main(argv: list[str]) -> int:
    """``groupnorm repro detection ARGV``; returns the exit status."""
    return run_experiment(EXPERIMENT, argv)
