"""``groupnorm repro``: the paper's experiments, one subcommand each, all on one runner and one config mechanism.

    groupnorm repro classification ...   Figure 1, Table 1, Table 3 (also plain ``groupnorm repro ...``)
    groupnorm repro detection ...        Mask R-CNN at small batch (§6.1)
    groupnorm repro video ...            3-D ResNets on clips (§6.2)

Each takes ``--preset NAME`` (``--preset NAME --help`` shows its values, ``--print-config`` the resolved runs), the
run settings as flags, ``report DIR``; rerunning a command resumes it.
"""

from __future__ import annotations

import argparse
import importlib

# the subcommands and the modules whose ``main(argv) -> int`` runs them
SUBCOMMANDS = {
    "classification": "groupnorm.repro.classification_command",
    "detection": "groupnorm.repro.detection.command",
    "video": "groupnorm.repro.video.command",
}
DEFAULT = "classification"  # `groupnorm repro ARGS` without a subcommand


def main(argv: list[str]) -> int:
    """Run ``groupnorm repro ARGV``: ``ARGV[0]`` names the subcommand, else it is a classification sweep."""
    name, rest = (argv[0], argv[1:]) if argv[:1] and argv[0] in SUBCOMMANDS else (DEFAULT, argv)
    if name == DEFAULT and argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
    return importlib.import_module(SUBCOMMANDS[name]).main(rest)


def register(subparsers) -> None:
    """``groupnorm repro`` in the program's command list. ``groupnorm.cli.main`` hands every argument after ``repro``
    to :func:`main` before this parser would see them (each subcommand has a parser of its own, and argparse's
    remainder cannot take a leading ``--flag``); the entry is here for ``groupnorm --help``."""
    p = subparsers.add_parser(
        "repro",
        help="reproduce the paper's experiments: classification (default), detection, video",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    p.add_argument("args", nargs=argparse.REMAINDER, help="a subcommand and its arguments")
    p.set_defaults(func=lambda args: main(args.args))
