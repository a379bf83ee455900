"""The ``--models`` options of ``groupnorm bench``: the whole-model benchmark of :mod:`groupnorm.bench.models`.

Examples::

    groupnorm bench --models --threads 2 --json bench-models.json --md bench-models.md   # every model
    groupnorm bench --models --quick                                                      # a short run
    groupnorm bench --models vae-decode,unet2d --vae small --layouts channels_last --device cuda
"""

from __future__ import annotations

import dataclasses
import sys
import time

import torch

from groupnorm.bench import allocator, harness, models, models_report, report
from groupnorm.repro.runtime import atomic_write_text

# The full CPU run on 2 idle cores should take about 10 minutes at most: each (model, layout) costs one checked
# call per model (two stock calls in training) and then 2 x rounds timed calls; SD's VAE decode at 64x64 latents
# (2.5 TFLOP a call) is most of it. With 3 rounds the estimate is about 8 minutes.
DEFAULT_ROUNDS = 3
QUICK_ROUNDS = 2
# options of the kernel benchmark that mean nothing to --models: given with it, they are an error
KERNEL_ONLY = ("providers", "shapes", "dtypes", "activations", "modes", "residual", "csv")


def _csv_ints(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"expected a comma list of integers, got {text!r}") from None


def add_arguments(parser) -> None:
    """Add the ``--models`` option group to the ``bench`` parser."""
    g = parser.add_argument_group(
        "whole-model benchmark",
        "stock models vs the same models after groupnorm.patch (random weights, same inputs); "
        "--layouts, --device, --rounds, --min-round-ms, --threads, --json, --md and --malloc apply too",
    )
    g.add_argument(
        "--models",
        nargs="?",
        const="all",
        metavar="NAMES",
        help="run the whole-model benchmark: every model, or a comma list of names or families "
        f"({', '.join(w.name for w in models.builtin_workloads())}; families vae-decode, timm-resnet50-gn)",
    )
    g.add_argument(
        "--quick",
        action="store_true",
        help=f"a short run: {QUICK_ROUNDS} rounds, --vae small at latents 32, the UNet at 32x32, the ResNets at 64x64",
    )
    g.add_argument(
        "--vae", choices=sorted(models.VAE_CONFIGS), help="VAE config (default: sd; --quick: small)"
    )
    g.add_argument("--latent-sizes", type=_csv_ints, help="VAE latent sides (default: 32,64; --quick: 32)")
    g.add_argument("--unet-size", type=int, help="UNet input side (default: 64; --quick: 32)")
    g.add_argument("--image-size", type=int, help="ResNet image side (default: 224; --quick: 64)")
    g.add_argument("--batch", type=int, help="ResNet batch (default: 8)")
    g.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="CALLS",
        help="after timing, profile CALLS calls of each model and report its time by operator kind "
        "(the norms' share bounds what the op can give the model; host time, so a CPU measure)",
    )


def options_given(args) -> str:
    """The ``--models`` options given (as flags, comma-separated), for an error when ``--models`` is not."""
    names = ("quick", "vae", "latent_sizes", "unet_size", "image_size", "batch", "profile")
    return ", ".join(f"--{n.replace('_', '-')}" for n in names if getattr(args, n))


def sizes(args) -> models.Sizes:
    """The sizes the options ask for (``--quick`` changes the defaults, explicit options win)."""
    base = models.QUICK if args.quick else models.FULL
    chosen = dict(
        vae=args.vae,
        latent_sides=tuple(args.latent_sizes) if args.latent_sizes else None,
        unet_side=args.unet_size,
        image_side=args.image_size,
        batch=args.batch,
    )
    return dataclasses.replace(base, **{k: v for k, v in chosen.items() if v is not None})


def command_line(args, rounds: int) -> str:
    """The options of this run as a command line (for the results page)."""
    parts = ["groupnorm", "bench", "--models"] + ([args.models] if args.models != "all" else [])
    if args.quick:
        parts.append("--quick")
    for flag, value in (("--vae", args.vae), ("--unet-size", args.unet_size), ("--image-size", args.image_size),
                        ("--batch", args.batch), ("--layouts", ",".join(args.layouts or []) or None),
                        ("--threads", args.threads)):  # fmt: skip
        if value:
            parts += [flag, str(value)]
    if args.latent_sizes:
        parts += ["--latent-sizes", ",".join(map(str, args.latent_sizes))]
    parts += ["--device", args.device, "--rounds", str(rounds), "--min-round-ms", f"{args.min_round_ms:g}"]
    if args.malloc != "keep":
        parts += ["--malloc", args.malloc]
    if args.profile:
        parts += ["--profile", str(args.profile)]
    for flag, value in (("--json", args.json), ("--md", args.markdown)):
        if value:
            parts += [flag, str(value)]
    return " ".join(parts)


def _fail(message: str) -> int:
    print(f"groupnorm bench --models: {message}", file=sys.stderr)
    return 2


def run(args) -> int:
    """``groupnorm bench --models``: check, time, print the table, write ``--json`` / ``--md``."""
    for name in KERNEL_ONLY:
        if getattr(args, name, None):
            return _fail(f"--{name} belongs to the kernel benchmark, not to --models")
    if args.resume or args.list:
        return _fail("--resume and --list belong to the kernel benchmark, not to --models")
    rounds = args.rounds if args.rounds is not None else (QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS)
    if rounds < 1:
        return _fail(f"--rounds must be at least 1, got {rounds}")
    if args.profile < 0:
        return _fail(f"--profile must be 0 or more calls, got {args.profile}")
    layouts = args.layouts or list(harness.LAYOUTS)
    for layout in layouts:
        if layout not in harness.LAYOUTS:
            return _fail(f"--layouts: unknown value {layout!r}; choose from {', '.join(harness.LAYOUTS)}")
    try:
        workloads = models.select(models.builtin_workloads(sizes(args)), args.models.split(","))
    except ValueError as error:
        return _fail(str(error))
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        return _fail("--device cuda but CUDA is not available")

    import groupnorm.ops  # noqa: F401  (the op and the kernels of this machine)

    env = report.environment(device)
    env["malloc"] = allocator.keep_freed_memory() if args.malloc == "keep" else "default"
    env.update(models_report.library_versions())
    rows: list[dict] = []
    total = len(workloads) * len(layouts)
    started = time.perf_counter()

    def on_row(row: dict) -> None:
        row.update(env)
        rows.append(row)
        if row["skipped"] or row["error"]:
            what = "skipped" if row["skipped"] else "refused"
        else:
            what = f"{row['ratio_median']:.2f}x in {row['row_s']:.0f} s"
        print(f"[{len(rows)}/{total}] {row['model']} {row['layout']}: {what}", file=sys.stderr, flush=True)
        if args.json:
            report.write_json(args.json, rows)

    models.run_all(
        workloads,
        layouts,
        device=device,
        rounds=rounds,
        min_round_s=args.min_round_ms / 1000,
        on_row=on_row,
        profile_calls=args.profile,
    )
    print(f"groupnorm bench --models: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if args.markdown:
        atomic_write_text(args.markdown, models_report.markdown_page(rows, command_line(args, rounds)))
    print(models_report.markdown_table(rows))
    refused = [r for r in rows if r["error"]]
    for r in refused:
        print(f"groupnorm bench --models: {r['error']}", file=sys.stderr)
    return 1 if refused else 0
