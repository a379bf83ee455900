"""The ``groupnorm`` program (also ``python -m groupnorm``).

Each subcommand lives in its own module with a ``register(subparsers)`` function that adds its parser and sets
``func`` (called with the parsed arguments, returning an exit code). Modules are imported only when the program
starts, and a subcommand whose module cannot be imported (a missing optional dependency) is left out with a note
rather than breaking the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# "module:function" of each subcommand's register function, in the order `--help` lists them.
COMMANDS: list[str] = [
    "groupnorm.info:register",
    "groupnorm.repro.command:register",
    "groupnorm.bench.command:register",
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand that imports on this machine."""
    parser = argparse.ArgumentParser(
        prog="groupnorm",
        description="Group Normalization: kernels, layers, benchmark and paper reproduction.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for entry in COMMANDS:
        module_name, function_name = entry.split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:  # an optional dependency is missing: keep the rest usable
            print(f"groupnorm: command from {module_name} unavailable: {error}", file=sys.stderr)
            continue
        getattr(module, function_name)(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the program with ``argv`` (default: ``sys.argv[1:]``) and return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["repro"]:
        from groupnorm.repro.command import main as repro

        # `repro [classification|detection|video] ...`: each subcommand has a parser of its own
        return repro(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
