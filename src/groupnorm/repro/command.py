"""``groupnorm repro``: run a reproduction sweep, or ``groupnorm repro report DIR`` to (re)write its report.

Examples::

    groupnorm repro --preset demo --out runs/demo
    groupnorm repro --dataset cifar10 --data-root data/cifar10 --norms bn,gn --batch-per-device 32,2 \\
        --devices 4 --epochs 30 --out runs/c10
    torchrun --nproc_per_node 2 -m groupnorm repro --preset demo --out runs/demo-ddp   # the same, 2 processes
    groupnorm repro report runs/demo

The transfer experiments have their own commands: ``groupnorm repro detection --help`` (Mask R-CNN, §6.1) and
``groupnorm repro video --help`` (3-D ResNets on clips, §6.2).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from groupnorm.repro.hparams import NORMS, SCHEDULES, SHORTCUTS, HParams
from groupnorm.repro.presets import PRESETS, preset

# flags that set one HParams field of the same name (the list-valued ones are handled by the sweep)
SCALAR_FIELDS = (
    "dataset", "model", "width", "devices", "epochs", "base_lr", "weight_decay", "schedule", "warmup_epochs",
    "train_subset", "test_subset", "image_size", "seed", "momentum", "eval_batch", "shortcut", "val_split",
)  # fmt: skip


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _norm_list(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in NORMS]
    if not values or bad:
        raise argparse.ArgumentTypeError(
            f"unknown norm {bad[0] if bad else text!r}; choose from {', '.join(NORMS)}"
        )
    return values


def _seeds_at(text: str) -> dict[int, int]:
    """``32:2,2:2`` -> {32: 2, 2: 2}."""
    out = {}
    for item in (v.strip() for v in text.split(",") if v.strip()):
        b, sep, n = item.partition(":")
        if not (sep and b.isdigit() and n.isdigit() and int(b) > 0 and int(n) > 0):
            raise argparse.ArgumentTypeError(f"expected BATCH:SEEDS pairs like 32:2,2:2, got {text!r}")
        out[int(b)] = int(n)
    if not out:
        raise argparse.ArgumentTypeError(f"expected BATCH:SEEDS pairs like 32:2,2:2, got {text!r}")
    return out


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


# `groupnorm repro NAME ...` handed to another module's ``main(argv) -> int`` with the rest of the arguments
SUBCOMMANDS = {
    "detection": "groupnorm.repro.detection.command",
    "video": "groupnorm.repro.video.command",
}


def run_subcommand(name: str, argv: list[str]) -> int | None:
    """Run ``groupnorm repro NAME ARGV`` if NAME is one of :data:`SUBCOMMANDS`; None otherwise."""
    if name not in SUBCOMMANDS:
        return None
    import importlib

    return importlib.import_module(SUBCOMMANDS[name]).main(argv)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "repro",
        help="reproduce the paper's experiments (sweeps, virtual devices, reports)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "action",
        nargs="?",
        choices=["run", "report"],
        default="run",
        help="run a sweep (default) or write the report of DIR",
    )
    p.add_argument("dir", nargs="?", help="for 'report': the sweep directory")
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named sweep; other flags override its values")
    p.add_argument("--out", help="output directory (default runs/<preset or dataset>)")
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved settings (preset and flags overlaid), the runs and the output folder, then exit "
        "without checking data or writing anything",
    )
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset",
        help="digits, textures[:key=value,...], cifar10, cifar100, mnist, fashion-mnist, imagefolder:PATH, npz:PATH",
    )
    g.add_argument("--data-root", help="where the dataset lies (default $GROUPNORM_DATA/<name>)")
    g.add_argument("--no-download", action="store_true", help="never download; read only local files")
    g.add_argument(
        "--train-subset", type=_positive_int, help="use this many training images (class-balanced)"
    )
    g.add_argument(
        "--test-subset", type=_positive_int, help="evaluate on this many test images (class-balanced)"
    )
    g.add_argument("--image-size", type=_positive_int, help="resize images to this square side")
    g.add_argument(
        "--val-split",
        type=_positive_int,
        help="hold out this many training images (class-balanced) and report the error on them, not on the "
        "test set: for choosing a recipe",
    )
    g = p.add_argument_group("sweep")
    g.add_argument("--norms", type=_norm_list, help=f"comma-separated, from {','.join(NORMS)}")
    g.add_argument("--batch-per-device", type=_int_list, help="images per device, e.g. 32,16,8,4,2")
    g.add_argument("--devices", type=_positive_int, help="virtual devices per step (the paper: 8)")
    g.add_argument("--groups", type=_int_list, help="GN group counts to sweep, e.g. 64,32,16 (Table 3)")
    g.add_argument("--group-size", type=_int_list, help="GN channels per group to sweep, e.g. 16,8 (Table 3)")
    g.add_argument(
        "--gn-groups", type=_positive_int, help="the main GN grouping: this many groups in every layer"
    )
    g.add_argument(
        "--gn-group-size", type=_positive_int, help="the main GN grouping: this many channels per group"
    )
    g.add_argument(
        "--ablation-batch",
        type=_int_list,
        help="images per device at which --groups/--group-size run (default: every batch size)",
    )
    g.add_argument("--seeds", type=_positive_int, help="seeds per cell (mean ± std)")
    g.add_argument(
        "--seeds-at",
        type=_seeds_at,
        help="seeds per cell at some batch sizes, e.g. 32:2,2:2 (norms run at every batch size)",
    )
    g.add_argument("--seed", type=int, help="first seed (default 0)")
    g = p.add_argument_group("training")
    g.add_argument(
        "--model",
        help="a CIFAR-style resnet<6n+2> (resnet8, the CPU presets'; resnet20/32/56/110) or resnet18/34/50/101 "
        "(default resnet20)",
    )
    g.add_argument("--width", type=_positive_float, help="width multiplier")
    g.add_argument("--epochs", type=_positive_int)
    g.add_argument("--base-lr", type=_positive_float, help="LR for 32 images per device (scaled linearly)")
    g.add_argument("--momentum", type=float)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--no-decay-norm", action="store_true", help="no weight decay on norm gamma/beta")
    g.add_argument(
        "--zero-init-last",
        choices=["on", "off"],
        help="gamma = 0 in the last norm of each residual block (default on, the paper's init)",
    )
    g.add_argument("--shortcut", choices=SHORTCUTS, help="CIFAR ResNets: pad (option A) or conv (option B)")
    g.add_argument("--schedule", choices=SCHEDULES)
    g.add_argument("--warmup-epochs", type=float)
    g.add_argument("--eval-batch", type=_positive_int)
    g.add_argument(
        "--channels-last", action="store_true", help="train in channels_last memory format (faster on CPU)"
    )
    p.add_argument(
        "--run-on",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="hardware to train on (auto: CUDA when available)",
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        help="CPU threads for torch (default: torch's choice; small models run faster on 1)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    p.set_defaults(func=main)


def settings(args: argparse.Namespace) -> dict:
    """Preset values overridden by the flags given."""
    merged = preset(args.preset) if args.preset else {}
    for key in (
        *SCALAR_FIELDS,
        "norms",
        "batch_per_device",
        "seeds",
        "threads",
        "ablation_batch",
        "seeds_at",
    ):
        value = getattr(args, key, None)
        if value is not None:
            merged[key] = value
    if (
        args.groups is not None or args.group_size is not None
    ):  # a grouping flag replaces the preset's grouping
        merged.pop("groups", None)
        merged.pop("group_sizes", None)
    if args.gn_groups is not None or args.gn_group_size is not None:  # likewise for the main grouping
        merged.pop("gn_groups", None)
        merged.pop("gn_group_size", None)
        merged.update({k: getattr(args, k) for k in ("gn_groups", "gn_group_size") if getattr(args, k)})
    if args.groups is not None:
        merged["groups"] = args.groups
    if args.group_size is not None:
        merged["group_sizes"] = args.group_size
    return merged


def build_spec(args: argparse.Namespace):
    from groupnorm.repro.sweep import SweepSpec

    s = settings(args)
    base_kw = {k: s[k] for k in SCALAR_FIELDS if k in s}
    if args.no_decay_norm or s.get("decay_norm_params") is False:
        base_kw["decay_norm_params"] = False
    if args.channels_last or s.get("channels_last"):
        base_kw["channels_last"] = True
    zero_init = args.zero_init_last or s.get("zero_init_last")
    if zero_init is not None:
        base_kw["zero_init_last"] = zero_init in ("on", True)
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


def spec_from_args(argv: list[str]):
    """The sweep that ``groupnorm repro ARGV`` would run, e.g. ``spec_from_args(["--preset", "demo"])``."""
    parser = argparse.ArgumentParser(prog="groupnorm")
    register(parser.add_subparsers())
    return build_spec(parser.parse_args(["repro", *argv]))


def resolved_config(spec, out: str) -> str:
    """What a sweep would run, as JSON: every setting after the preset and the flags are overlaid, the output
    folder and each run's id."""
    import json

    return json.dumps(
        {"out": out, "sweep": spec.to_dict(), "runs": [hp.run_id() for hp in spec.runs()]},
        indent=1,
        sort_keys=True,
    )


def _error(msg: str) -> int:
    print(f"groupnorm repro: error: {msg}", file=sys.stderr)
    return 2


def check_args(args: argparse.Namespace, spec) -> None:
    """What can be checked before the sweep draws a progress bar or writes under ``--out``: the device, the data
    set and the data root (``ValueError`` naming the flag; see :mod:`groupnorm.repro.preflight`)."""
    from groupnorm.repro import preflight

    preflight.check_run_on(args.run_on)
    dataset = spec.base.dataset
    reads_root = preflight.check_image_dataset(
        dataset, preflight.dataset_value(dataset, args.dataset, args.preset)
    )
    preflight.check_data_root(
        args.data_root,
        downloads=reads_root and not args.no_download,
        why_not="--no-download: nothing is downloaded there" if reads_root else "",
    )


def main(args: argparse.Namespace) -> int:
    if args.action == "report":
        if not args.dir:
            return _error("report needs the sweep directory: groupnorm repro report DIR")
        from groupnorm.repro.report import report_summary, write_report

        try:
            path = write_report(args.dir)
            print(report_summary(path), flush=True)
            print(f"report: {path}")
        except (FileNotFoundError, ValueError) as e:
            return _error(str(e))
        return 0
    if args.dir:
        return _error(f"unexpected argument {args.dir!r} (did you mean --out {args.dir}?)")
    try:
        spec = build_spec(args)
        out = args.out or os.path.join(
            "runs", args.preset or spec.base.dataset.replace(":", "_").replace("/", "_")
        )
        if args.print_config:
            print(resolved_config(spec, out))
            return 0
        check_args(args, spec)
    except (ValueError, TypeError) as e:
        return _error(str(e))
    command = (
        "groupnorm " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["repro"] else None
    )
    from groupnorm.repro.threads import torch_threads

    # the sweep's thread count, for this command only (a caller in the same process keeps its own)
    with torch_threads(settings(args).get("threads")):
        return _run(args, spec, out, command)


def _run(args: argparse.Namespace, spec, out: str, command: str | None) -> int:
    from groupnorm.repro.image_folders import DataUnavailable
    from groupnorm.repro.sweep import run_sweep

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        import torch
        import torch.distributed as dist

        use_cuda = args.run_on != "cpu" and torch.cuda.is_available()
        dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        run_sweep(spec, out, quiet=args.quiet, command=command, report=not args.no_report, device=args.run_on)
        if world > 1:
            import torch.distributed as dist

            # rank 0 still writes the aggregate and the report; tearing gloo down under it can abort the others
            dist.barrier()
    except DataUnavailable as e:
        return _error(str(e))
    except ValueError as e:
        return _error(str(e))
    finally:
        if world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
    return 0
