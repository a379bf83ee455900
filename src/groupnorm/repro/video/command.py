"""``groupnorm repro video``: 3-D ResNets on clips, BN vs GN at few clips per device, the paper's §6.2.

Examples::

    groupnorm repro video --preset video-tiny --out runs/video-tiny         # seconds, tiny generated clips
    groupnorm repro video --preset video-cpu --out runs/video-cpu           # about an hour on 2 CPU cores
    torchrun --nproc_per_node 8 -m groupnorm repro video --preset kinetics --dataset clips:data/kinetics \\
        --out runs/kinetics
    groupnorm repro video report runs/video-cpu

``--settings 8x8,8x4,16x2`` lists (frames × clips per device) pairs. Rerunning the same command resumes (also
after SIGKILL); several processes may share one sweep.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import replace

from groupnorm.repro.config_flags import add_config_flags, config_values, list_of
from groupnorm.repro.video.config import VIDEO_NORMS, VideoConfig
from groupnorm.repro.video.presets import PRESETS, video_preset
from groupnorm.repro.video.report import SUMMARY_FIELDS

GRID_KEYS = ("norms", "settings", "seeds", "threads")


def _settings_list(text: str) -> list[list[int]]:
    """``8x8,16x2`` -> [[8, 8], [16, 2]] (frames × clips per device)."""
    out = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        f, sep, c = item.partition("x")
        if not (sep and f.isdigit() and c.isdigit() and int(f) > 0 and int(c) > 0):
            raise argparse.ArgumentTypeError(f"expected FRAMESxCLIPS pairs like 8x8,16x2, got {text!r}")
        out.append([int(f), int(c)])
    if not out:
        raise argparse.ArgumentTypeError(f"expected FRAMESxCLIPS pairs like 8x8,16x2, got {text!r}")
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="groupnorm repro video",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", nargs="?", choices=["run", "report"], default="run")
    p.add_argument("dir", nargs="?", help="for 'report': the sweep directory")
    p.add_argument("--preset", choices=sorted(PRESETS))
    p.add_argument("--out", help="output directory (default runs/<preset>)")
    p.add_argument("--norms", type=list_of(str, VIDEO_NORMS), help="comma-separated, from bn,gn")
    p.add_argument("--settings", type=_settings_list, help="FRAMESxCLIPS pairs, e.g. 8x8,8x4,16x2")
    p.add_argument("--seeds", type=int, help="seeds per cell")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--run-on", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--no-report", action="store_true")
    add_config_flags(
        p.add_argument_group("run"), VideoConfig, skip=("norm", "frames", "clips_per_device", "seed")
    )
    p.add_argument("--seed", type=int, help="first seed (default 0)")
    return p


def _settings(args: argparse.Namespace) -> dict:
    s = video_preset(args.preset) if args.preset else {}
    s.update(config_values(args, VideoConfig))
    for key in GRID_KEYS:
        if getattr(args, key, None) is not None:
            s[key] = getattr(args, key)
    if args.seed is not None:
        s["seed"] = args.seed
    return s


def _configs(args: argparse.Namespace) -> list[VideoConfig]:
    s = _settings(args)
    base = VideoConfig(**{k: v for k, v in s.items() if k not in GRID_KEYS})
    seeds = s.get("seeds", 1)
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    return [
        replace(base, norm=n, frames=f, clips_per_device=c, seed=seed)
        for seed in range(base.seed, base.seed + seeds)
        for f, c in s.get("settings", [[base.frames, base.clips_per_device]])
        for n in s.get("norms", list(VIDEO_NORMS))
    ]


def configs_from_args(argv: list[str]) -> list[VideoConfig]:
    """The runs ``groupnorm repro video ARGV`` would train, in order."""
    return _configs(build_parser().parse_args(argv))


def main(argv: list[str]) -> int:
    from groupnorm.repro.transfer_command import run_transfer_command
    from groupnorm.repro.video.report import write_video_report

    return run_transfer_command(
        "video",
        build_parser().parse_args(argv),
        write_report=write_video_report,
        configs=_configs,
        settings=_settings,
        run=_run,
        errors=(ValueError, FileNotFoundError),
        check=_check,
    )


def _check(args: argparse.Namespace, configs: list[VideoConfig]) -> None:
    """Device and data set, before anything is drawn or written (the clips themselves are read by ``_run``,
    also before then)."""
    from groupnorm.repro import preflight

    preflight.check_run_on(args.run_on)
    spec = configs[0].dataset
    preflight.check_clip_dataset(spec, preflight.dataset_value(spec, args.dataset, args.preset))


def _run(args: argparse.Namespace, configs: list[VideoConfig]) -> int:
    import torch.distributed as dist

    from groupnorm.repro.grid import run_grid
    from groupnorm.repro.preflight import dataset_value, flagged
    from groupnorm.repro.video.folder import load_clip_data
    from groupnorm.repro.video.report import write_video_report
    from groupnorm.repro.video.train import VideoTrainer

    out = args.out or os.path.join("runs", args.preset or "video")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        import torch

        dist.init_process_group("nccl" if args.run_on != "cpu" and torch.cuda.is_available() else "gloo")
    data_by_frames: dict[int, object] = {}

    def data_for(frames: int):
        if frames not in data_by_frames:
            data_by_frames[frames] = load_clip_data(configs[0].dataset, frames)
        return data_by_frames[frames]

    # every clip length the grid needs, before run_grid draws or writes anything: a data set that cannot be read,
    # or clips shorter than a setting's frames, fail now rather than after the runs before them (the sweep holds
    # them all by its end anyway)
    spec = configs[0].dataset
    for frames in dict.fromkeys(c.frames for c in configs):
        try:
            data_for(frames)
        except (ValueError, FileNotFoundError) as e:
            raise flagged("--dataset", dataset_value(spec, args.dataset, args.preset), e) from None

    def job(cfg: VideoConfig):
        def make(run_dir, progress, on_round):
            log = print if progress is None else progress.warn
            return VideoTrainer(
                cfg, data_for(cfg.frames), run_dir, device=args.run_on, progress=progress, log=log,
                on_round=on_round,
            )  # fmt: skip

        return cfg.run_id(), make

    meta = {"sweep": [c.to_dict() for c in configs], "base": configs[0].to_dict()}
    command = None
    if sys.argv[1:3] == ["repro", "video"]:
        command = "groupnorm repro video " + " ".join(shlex.quote(a) for a in sys.argv[3:])
    try:
        run_grid(
            [job(c) for c in configs], out, fields=SUMMARY_FIELDS, meta=meta, quiet=args.quiet, command=command,
            describe=lambda r: f"val error {r.get('val_error', float('nan')):.2f}%",
        )  # fmt: skip
        if world > 1:
            dist.barrier()
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    if not args.no_report and int(os.environ.get("RANK", "0")) == 0:
        print(f"report: {write_video_report(out)}", flush=True)
    return 0
