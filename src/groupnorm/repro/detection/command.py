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
import os
import shlex
import sys
from dataclasses import replace

from groupnorm.repro.config_flags import add_config_flags, config_values, list_of
from groupnorm.repro.detection.config import VARIANTS, DetectionConfig
from groupnorm.repro.detection.presets import PRESETS, detection_preset
from groupnorm.repro.detection.report import SUMMARY_FIELDS

GRID_KEYS = ("variants", "images_per_device", "seeds", "threads")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="groupnorm repro detection", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("action", nargs="?", choices=["run", "report"], default="run")
    p.add_argument("dir", nargs="?", help="for 'report': the sweep directory")
    p.add_argument("--preset", choices=sorted(PRESETS))
    p.add_argument("--out", help="output directory (default runs/<preset>)")
    p.add_argument("--data-root", help="CIFAR-10's directory for scenes:objects=cifar10")
    p.add_argument("--no-download", action="store_true", help="never download CIFAR-10")
    p.add_argument(
        "--variants", type=list_of(str, VARIANTS), help=f"comma-separated, from {','.join(VARIANTS)}"
    )
    p.add_argument("--images-per-device", dest="images_per_device", type=list_of(int), help="e.g. 2,1")
    p.add_argument("--seeds", type=list_of(int), help="seeds per cell, e.g. 2 (from --seed on)")
    p.add_argument("--bn-backbone", help="checkpoint.pt of a BN classification run (BN* and BN variants)")
    p.add_argument("--gn-backbone", help="checkpoint.pt of a GN classification run (GN variants)")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--run-on", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--no-report", action="store_true")
    add_config_flags(
        p.add_argument_group("run"),
        DetectionConfig,
        skip=("variant", "pretrained", "seed", "images_per_device"),
    )
    p.add_argument("--seed", type=int, help="first seed (default 0)")
    return p


def configs_from_args(argv: list[str]) -> list[DetectionConfig]:
    """The runs ``groupnorm repro detection ARGV`` would train, in order (variant-major within a batch size)."""
    args = build_parser().parse_args(argv)
    return _configs(args)


def _settings(args: argparse.Namespace) -> dict:
    s = detection_preset(args.preset) if args.preset else {}
    s.update(config_values(args, DetectionConfig))
    for key in GRID_KEYS:
        if getattr(args, key, None) is not None:
            s[key] = getattr(args, key)
    if args.seed is not None:
        s["seed"] = args.seed
    return s


def _configs(args: argparse.Namespace) -> list[DetectionConfig]:
    s = _settings(args)
    seeds = s.get("seeds", 1)
    if isinstance(seeds, list):  # from the flag: a one-element list
        if len(seeds) != 1:
            raise ValueError(f"--seeds takes one number, got {','.join(map(str, seeds))}")
        seeds = seeds[0]
    base = DetectionConfig(**{k: v for k, v in s.items() if k not in GRID_KEYS})
    out = []
    for b in s.get("images_per_device", [base.images_per_device]):
        for v in s.get("variants", list(VARIANTS)):
            pretrained = {"bn_frozen": args.bn_backbone, "bn_finetune": args.bn_backbone,
                          "gn_backbone": args.gn_backbone, "gn_all": args.gn_backbone}.get(v)  # fmt: skip
            for seed in range(base.seed, base.seed + seeds):
                out.append(replace(base, variant=v, images_per_device=b, seed=seed, pretrained=pretrained))
    return out


def main(argv: list[str]) -> int:
    from groupnorm.repro.detection.report import write_detection_report
    from groupnorm.repro.image_folders import DataUnavailable
    from groupnorm.repro.transfer_command import run_transfer_command

    return run_transfer_command(
        "detection",
        build_parser().parse_args(argv),
        write_report=write_detection_report,
        configs=_configs,
        settings=_settings,
        run=_run,
        errors=(ValueError, FileNotFoundError, DataUnavailable),
        check=_check,
    )


BACKBONE_FLAGS = {"bn": "--bn-backbone", "gn": "--gn-backbone"}  # the backbone norm each flag gives


def _check(args: argparse.Namespace, configs: list[DetectionConfig]) -> None:
    """Device, data set, data root and the backbone checkpoints, before anything is drawn or written: a checkpoint
    of the wrong norm or architecture fails now, not when its variant's run comes up hours into the sweep."""
    from groupnorm.repro import preflight
    from groupnorm.repro.detection.model import _checked_hparams, needs_pretrained_norm

    preflight.check_run_on(args.run_on)
    spec = configs[0].dataset
    reads_root = preflight.check_detection_dataset(
        spec, preflight.dataset_value(spec, args.dataset, args.preset)
    )
    preflight.check_data_root(
        args.data_root,
        downloads=reads_root and not args.no_download,
        why_not="--no-download: nothing is downloaded there" if reads_root else "",
    )
    for norm, flag in BACKBONE_FLAGS.items():
        path = getattr(args, f"{norm}_backbone")
        if path is not None:  # also when no chosen variant uses it: the user meant something by it
            preflight.check_checkpoint(path, flag)
    checked = set()
    for cfg in configs:
        wanted = needs_pretrained_norm(cfg.variant)
        if cfg.pretrained is None or wanted is None or (cfg.pretrained, wanted) in checked:
            continue
        checked.add((cfg.pretrained, wanted))
        try:
            _checked_hparams(cfg)  # loads it: norm, architecture, a readable checkpoint
        except (ValueError, FileNotFoundError) as e:
            raise preflight.flagged(BACKBONE_FLAGS[wanted], cfg.pretrained, e) from None


def _run(args: argparse.Namespace, configs: list[DetectionConfig]) -> int:
    import torch.distributed as dist

    from groupnorm.repro.detection.coco import load_detection_data
    from groupnorm.repro.detection.report import write_detection_report
    from groupnorm.repro.detection.train import DetectionTrainer
    from groupnorm.repro.grid import run_grid
    from groupnorm.repro.preflight import dataset_value, flagged

    out = args.out or os.path.join("runs", args.preset or "detection")
    spec = configs[0].dataset
    try:  # before run_grid: nothing is drawn or written for data that cannot be had
        data = load_detection_data(spec, args.data_root, download=not args.no_download)
    except (ValueError, FileNotFoundError) as e:
        raise flagged("--dataset", dataset_value(spec, args.dataset, args.preset), e) from None
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        import torch

        dist.init_process_group("nccl" if args.run_on != "cpu" and torch.cuda.is_available() else "gloo")

    def job(cfg: DetectionConfig):
        def make(run_dir, progress, on_round):
            return DetectionTrainer(cfg, data, run_dir, device=args.run_on, progress=progress,
                                    log=print if progress is None else progress.warn, on_round=on_round)  # fmt: skip

        return cfg.run_id(), make

    meta = {"sweep": [c.to_dict() for c in configs], "base": configs[0].to_dict(), "data": data.describe()}
    command = "groupnorm repro detection " + " ".join(shlex.quote(a) for a in sys.argv[3:]) \
        if sys.argv[1:3] == ["repro", "detection"] else None  # fmt: skip
    try:
        run_grid([job(c) for c in configs], out, fields=SUMMARY_FIELDS, meta=meta, quiet=args.quiet,
                 command=command,
                 describe=lambda r: f"box AP {r.get('box_ap', 0):.2f}, mask AP {r.get('mask_ap', 0):.2f}")  # fmt: skip
        if world > 1:
            dist.barrier()
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    if not args.no_report and int(os.environ.get("RANK", "0")) == 0:
        print(f"report: {write_detection_report(out)}", flush=True)
    return 0
