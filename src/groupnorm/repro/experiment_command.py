"""What the three ``groupnorm repro`` subcommands (classification, detection, video) share: their common flags,
how a preset and the flags overlay into the settings a sweep runs with, and ``main``.

Each subcommand is an :class:`Experiment`: a parser builder (given the preset's values, so that ``--preset NAME
--help`` shows the values that preset runs with), a ``plan`` (settings -> the runs), a ``check`` of what can be
found wrong before anything is drawn or written, a ``run`` and a report writer. :func:`run_experiment` carries out
``report DIR``, ``--print-config`` (the resolved settings and every run's id, nothing checked or written) or a
sweep: checks, the thread count for the command, the torchrun process group, the runs, the report; expected
failures become one error line and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from groupnorm.repro.config_flags import config_values, positive_int


@dataclass(frozen=True)
class Plan:
    """What a command would run: ``runs`` (each with ``run_id()``), the output folder and the settings shown by
    ``--print-config`` (``shown``: JSON-able)."""

    runs: list
    out: str
    shown: dict
    payload: object = None  # what ``run`` needs besides the runs (the classification sweep's spec)


@dataclass(frozen=True)
class Experiment:
    name: str  # the subcommand: classification, detection, video
    config_cls: type  # its RunConfig
    presets: dict[str, dict]
    grid_keys: tuple[str, ...]  # settings that are not one field of a run (the sweep's lists, threads)
    skip: tuple[str, ...]  # config fields whose flag is not the field's own (a sweep list, a spelled option)
    build_parser: Callable[[dict, str | None], argparse.ArgumentParser]  # (preset values, preset name)
    plan: Callable[[argparse.Namespace, dict], Plan]  # (args, settings)
    run: Callable[[argparse.Namespace, Plan], None]
    # "module:function" writing a sweep folder's report and returning its path (it may print a summary first)
    write_report: str
    check: Callable[[argparse.Namespace, Plan], None] = lambda args, plan: None
    # the settings of parsed flags, when more than the preset overlaid by the flags (classification's groupings)
    custom_settings: Callable[[argparse.Namespace], dict] | None = None
    # what a run may fail with that is the user's to fix (a missing data set, a wrong checkpoint): one error line
    errors: tuple[type[BaseException], ...] = field(default=(ValueError,))

    def report(self, out: str) -> str:
        """Write the report of the sweep folder ``out``; its path."""
        import importlib

        module, function = self.write_report.split(":")
        return str(getattr(importlib.import_module(module), function)(out))

    def settings(self, args: argparse.Namespace) -> dict:
        """What a sweep runs with: the preset's values overlaid by the flags given."""
        if self.custom_settings is not None:
            return self.custom_settings(args)
        return overlay(args, self.presets, self.config_cls, self.grid_keys, self.skip)


def preset_values(presets: dict[str, dict], name: str | None, kind: str = "") -> dict:
    """A copy of preset ``name``'s values (``{}`` for None); ``ValueError`` naming ``--preset`` for an unknown one."""
    if name is None:
        return {}
    if name not in presets:
        raise ValueError(f"--preset {name}: unknown {kind}preset; choose from {', '.join(presets)}")
    return dict(presets[name])


def overlay(
    args: argparse.Namespace,
    presets: dict[str, dict],
    config_cls,
    grid_keys: tuple[str, ...],
    skip: tuple[str, ...] = (),
) -> dict:
    """The settings a sweep runs with: the preset's values, then every config field (but those in ``skip``,
    whose flags are not the field's) and every grid key a flag set."""
    settings = preset_values(presets, args.preset)
    settings.update(config_values(args, config_cls, skip))
    for key in grid_keys:
        if getattr(args, key, None) is not None:
            settings[key] = getattr(args, key)
    return settings


def new_parser(
    prog: str, description: str, presets: dict[str, dict], preset: str | None, out: str = "runs/<preset>"
) -> argparse.ArgumentParser:
    """A subcommand's parser with the flags every experiment has (action, --preset, --out, --print-config, where it
    runs, threads, output)."""
    epilog = (
        f"Defaults shown are those of --preset {preset}."
        if preset
        else "Defaults shown are those without a preset; `--preset NAME --help` shows a preset's."
    )
    p = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "action",
        nargs="?",
        choices=["run", "report"],
        default="run",
        help="run the sweep (default) or write the report of DIR",
    )
    p.add_argument("dir", nargs="?", help="for 'report': the sweep directory")
    p.add_argument(
        "--preset", choices=sorted(presets), help="a named sweep; the flags given override its values"
    )
    p.add_argument("--out", help=f"output directory (default {out})")
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved settings (preset and flags overlaid), every run's id and the output folder, then "
        "exit without checking data or writing anything",
    )
    p.add_argument(
        "--run-on",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="hardware to train on (default auto: CUDA when available)",
    )
    threads = preset_values(presets, preset).get("threads")
    p.add_argument(
        "--threads",
        type=positive_int,
        help=f"CPU threads for torch (default {threads if threads else 'torch’s choice'})",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    return p


def _preset_in(argv: list[str], presets: dict[str, dict]) -> str | None:
    """The ``--preset`` of ``argv`` when it names one (the parser reports a wrong one)."""
    for i, arg in enumerate(argv):
        name = (
            arg.split("=", 1)[1]
            if arg.startswith("--preset=")
            else argv[i + 1]
            if arg == "--preset" and i + 1 < len(argv)
            else None
        )
        if name in presets:
            return name
    return None


def parse(experiment: Experiment, argv: list[str]) -> argparse.Namespace:
    """``argv`` parsed by the experiment's parser, built with the values of the preset ``argv`` names."""
    name = _preset_in(argv, experiment.presets)
    return experiment.build_parser(preset_values(experiment.presets, name), name).parse_args(argv)


def plan_from_args(experiment: Experiment, argv: list[str]) -> Plan:
    """What ``groupnorm repro NAME ARGV`` would run, e.g. ``plan_from_args(EXPERIMENT, ["--preset", "demo"]).runs``."""
    args = parse(experiment, argv)
    return experiment.plan(args, experiment.settings(args))


def run_experiment(experiment: Experiment, argv: list[str]) -> int:
    """Carry out ``groupnorm repro NAME ARGV``; returns the exit status."""
    from groupnorm.repro.image_folders import DataUnavailable
    from groupnorm.repro.runtime import distributed_session
    from groupnorm.repro.threads import torch_threads

    errors = (*experiment.errors, DataUnavailable)  # expected failures of a run: one line, no traceback

    def error(msg: str) -> int:
        print(f"groupnorm repro {experiment.name}: error: {msg}", file=sys.stderr)
        return 2

    args = parse(experiment, argv)
    if args.action == "report":
        if not args.dir:
            return error(f"report needs the sweep directory: groupnorm repro {experiment.name} report DIR")
        try:
            print(f"report: {experiment.report(args.dir)}", flush=True)
        except (FileNotFoundError, ValueError) as e:
            return error(str(e))
        return 0
    if args.dir:
        return error(f"unexpected argument {args.dir!r} (did you mean --out {args.dir}?)")
    try:  # what the flags ask for: a bad value names its flag
        settings = experiment.settings(args)
        plan = experiment.plan(args, settings)
    except (ValueError, TypeError) as e:
        return error(str(flag_named(e, args, experiment)))
    if args.print_config:
        shown = {"out": plan.out, **plan.shown, "runs": [r.run_id() for r in plan.runs]}
        print(json.dumps(shown, indent=1, sort_keys=True))
        return 0
    try:
        experiment.check(args, plan)
        # the sweep's thread count, for this command only (a caller in the same process keeps its own)
        with torch_threads(settings.get("threads")), distributed_session(args.run_on):
            experiment.run(args, plan)
        if not args.no_report and int(os.environ.get("RANK", "0")) == 0:
            print(f"report: {experiment.report(plan.out)}", flush=True)
    except errors as e:
        return error(str(e))
    return 0


def flag_named(error: Exception, args: argparse.Namespace, experiment: Experiment) -> Exception:
    """A run config's ``field must be ...`` check, said of the flag the user typed (``--devices 0: devices must
    be >= 1, got 0``); other errors as they are."""
    text = str(error)
    for f in dataclasses.fields(experiment.config_cls):
        value = getattr(args, f.name, None)
        if (
            f.name not in experiment.skip
            and value is not None
            and text.startswith((f"{f.name} ", f"{f.name}:"))
        ):
            return ValueError(f"--{f.name.replace('_', '-')} {value}: {text}")
    return error


def default_out(args: argparse.Namespace, fallback: str) -> str:
    """``--out``, else ``runs/<preset>``, else ``runs/<fallback>``."""
    return args.out or os.path.join("runs", args.preset or fallback)
