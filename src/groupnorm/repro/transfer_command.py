"""The shared ``main`` of the transfer commands (``groupnorm repro detection`` and ``groupnorm repro video``).

Both take ``report DIR`` or a grid to run, check their arguments before anything is drawn or written, set the
worker's thread count for the length of the run and turn expected failures into one error line and exit status 2;
only the pieces named here differ.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def run_transfer_command(
    name: str,
    args: argparse.Namespace,
    *,
    write_report: Callable[[str], object],
    configs: Callable[[argparse.Namespace], list],
    settings: Callable[[argparse.Namespace], dict],
    run: Callable[[argparse.Namespace, list], int],
    errors: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError),
    check: Callable[[argparse.Namespace, list], None] | None = None,
) -> int:
    """Carry out parsed ``args`` of ``groupnorm repro NAME``; returns the exit status.

    ``check(args, configs)`` raises (one of ``errors``, naming the flag) for what can be found wrong before ``run``
    draws a progress bar or writes under ``--out``: data set, data root, device, checkpoints.
    """
    from groupnorm.repro.threads import torch_threads

    def error(msg: str) -> int:
        print(f"groupnorm repro {name}: error: {msg}", file=sys.stderr)
        return 2

    if args.action == "report":
        if not args.dir:
            return error(f"report needs the sweep directory: groupnorm repro {name} report DIR")
        try:
            print(f"report: {write_report(args.dir)}")
        except (FileNotFoundError, ValueError) as e:
            return error(str(e))
        return 0
    if args.dir:
        return error(f"unexpected argument {args.dir!r} (did you mean --out {args.dir}?)")
    try:
        chosen = configs(args)
        if check is not None:
            check(args, chosen)
        # the worker's thread count, for this command only (a caller in the same process keeps its own)
        with torch_threads(settings(args).get("threads")):
            return run(args, chosen)
    except errors as e:
        return error(str(e))
