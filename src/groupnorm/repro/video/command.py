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
from dataclasses import replace

from groupnorm.repro.config_flags import (
    SEEDS,
    SweepFlag,
    add_config_flags,
    add_sweep_flags,
    int_pairs,
    list_of,
)
from groupnorm.repro.experiment_command import (
    Experiment,
    Plan,
    default_out,
    new_parser,
    plan_from_args,
    run_experiment,
)
from groupnorm.repro.video.config import VIDEO_NORMS, VideoConfig
from groupnorm.repro.video.presets import PRESETS

GRID_KEYS = ("norms", "settings", "seeds", "threads")
SKIP = ("norm", "frames", "clips_per_device")  # the grid's flags


SWEEP_FLAGS = (
    SweepFlag("--norms", list_of(str, VIDEO_NORMS), "comma-separated, from bn,gn", list(VIDEO_NORMS)),
    SweepFlag(
        "--settings",
        int_pairs("x", "FRAMESxCLIPS", "8x8,16x2"),
        "FRAMESxCLIPS pairs, e.g. 8x8,8x4,16x2",
        [[VideoConfig.frames, VideoConfig.clips_per_device]],
    ),
    SEEDS,
)


def build_parser(values: dict, preset: str | None) -> argparse.ArgumentParser:
    """The parser of ``groupnorm repro video``; its help shows the defaults of ``values`` (a preset's)."""
    p = new_parser("groupnorm repro video", __doc__, PRESETS, preset)
    add_sweep_flags(p.add_argument_group("sweep"), SWEEP_FLAGS, values)
    add_config_flags(p.add_argument_group("run"), VideoConfig, skip=SKIP, defaults=values, preset=preset)
    return p


def plan(args: argparse.Namespace, s: dict) -> Plan:
    """The runs, in order (seed-major, then settings, then norms)."""
    base = VideoConfig(**{k: v for k, v in s.items() if k not in GRID_KEYS})
    runs = [
        replace(base, norm=n, frames=f, clips_per_device=c, seed=seed)
        for seed in range(base.seed, base.seed + s.get("seeds", 1))
        for f, c in s.get("settings", [[base.frames, base.clips_per_device]])
        for n in s.get("norms", list(VIDEO_NORMS))
    ]
    return Plan(runs=runs, out=default_out(args, "video"), shown={"configs": [c.to_dict() for c in runs]})


def configs_from_args(argv: list[str]) -> list[VideoConfig]:
    """The runs ``groupnorm repro video ARGV`` would train, in order."""
    return plan_from_args(EXPERIMENT, argv).runs


def check(args: argparse.Namespace, plan: Plan) -> None:
    """Device and data set, before anything is drawn or written (the clips themselves are read by ``run``, also
    before then)."""
    from groupnorm.repro import preflight

    preflight.check_run_on(args.run_on)
    spec = plan.runs[0].dataset
    preflight.check_clip_dataset(spec, preflight.dataset_value(spec, args.dataset, args.preset))


def run(args: argparse.Namespace, plan: Plan) -> None:
    from groupnorm.repro.preflight import dataset_value, flagged
    from groupnorm.repro.runner import run_configs
    from groupnorm.repro.video.folder import load_clip_data
    from groupnorm.repro.video.report import SUMMARY_FIELDS
    from groupnorm.repro.video.train import VideoTrainer

    configs = plan.runs
    data_by_frames: dict[int, object] = {}

    def data_for(frames: int):
        if frames not in data_by_frames:
            data_by_frames[frames] = load_clip_data(configs[0].dataset, frames)
        return data_by_frames[frames]

    # every clip length the grid needs, before run_jobs draws or writes anything: a data set that cannot be read,
    # or clips shorter than a setting's frames, fail now rather than after the runs before them (the sweep holds
    # them all by its end anyway)
    spec = configs[0].dataset
    for frames in dict.fromkeys(c.frames for c in configs):
        try:
            data_for(frames)
        except (ValueError, FileNotFoundError) as e:
            raise flagged("--dataset", dataset_value(spec, args.dataset, args.preset), e) from None

    run_configs(
        configs, plan.out,
        lambda cfg, run_dir, **kw: VideoTrainer(cfg, data_for(cfg.frames), run_dir, device=args.run_on, **kw),
        fields=SUMMARY_FIELDS, quiet=args.quiet,
        describe=lambda r: f"val error {r.get('val_error', float('nan')):.2f}%",
    )  # fmt: skip


EXPERIMENT = Experiment(
    name="video",
    config_cls=VideoConfig,
    presets=PRESETS,
    grid_keys=GRID_KEYS,
    skip=SKIP,
    build_parser=build_parser,
    plan=plan,
    run=run,
    write_report="groupnorm.repro.video.report:write_video_report",
    check=check,
    errors=(ValueError, FileNotFoundError),
)


def main(argv: list[str]) -> int:
    """``groupnorm repro video ARGV``; returns the exit status."""
    return run_experiment(EXPERIMENT, argv)
