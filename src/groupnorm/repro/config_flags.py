"""Command-line flags from a config dataclass: one ``--field-name`` per scalar field, typed by its annotation,
offering the choices of the config's ``CHOICES`` and saying the default a user would run with.

Every ``groupnorm repro`` subcommand takes its run settings this way, so a new field of a config is a new flag with
no parser code; presets are dicts of the same names.

>>> import argparse
>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class C:
...     steps: int = 10
...     lr: float = 0.1
...     size: int | None = None
>>> p = argparse.ArgumentParser()
>>> add_config_flags(p, C)
>>> config_values(p.parse_args(["--steps", "5"]), C)
{'steps': 5}
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import typing
from collections.abc import Callable


def _parse(kind: type, name: str):
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None

    return parse


def _scalar_type(annotation) -> type | None:
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    return args[0] if len(args) == 1 and args[0] in (int, float, str) else None


# what a field means in every experiment's config
COMMON_HELP = {"seed": "first seed: --seeds N runs seed, seed + 1, ..."}


def field_comments(cls) -> dict[str, str]:
    """What each field of dataclass ``cls`` means, from the comments its definition carries (on its line, on the
    lines of a parenthesized default, or on whole lines just above it): the flags' help, from one source.

    >>> from groupnorm.repro.video.config import VideoConfig
    >>> field_comments(VideoConfig)["frames"]
    'frames per clip (the paper: 32, and 64 for its long-clip setting)'
    """
    names = {f.name for f in dataclasses.fields(cls)}
    comments: dict[str, list[str]] = {}
    above: list[str] = []
    current = None
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):  # defined where no source is kept (an interactive session): no comments
        return {}
    for line in source.splitlines():
        if line.startswith("    ") and not line.startswith("     "):  # the class body's own level
            body = line[4:]
            name = body.split(":", 1)[0]
            if name in names:
                current, comments[name], above = name, above, []
            else:  # a comment above the next field, or a method, decorator or constant
                current = None
                above = [*above, body[1:].strip()] if body.startswith("#") else []
                continue
        if current is not None and "  # " in line:
            comments[current].append(line.split("  # ", 1)[1].strip())
    return {k: " ".join(v) for k, v in comments.items() if v}


def add_config_flags(
    parser,
    cls,
    skip: tuple[str, ...] = (),
    help_of: dict[str, str] | None = None,
    defaults: dict | None = None,
    preset: str | None = None,
) -> None:
    """A ``--field-name`` flag for each int/float/str field of dataclass ``cls`` not in ``skip``.

    Its help is ``help_of[name]`` followed by the default the command runs with: ``defaults[name]`` (the values of
    ``--preset preset``) where given, else the field's own default."""
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    choices_of = getattr(cls, "CHOICES", {})
    defaults = defaults or {}
    for f in dataclasses.fields(cls):
        kind = _scalar_type(hints[f.name])
        if f.name in skip or kind is None:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.name in defaults:
            default = (
                f"default {defaults[f.name]!r}, from --preset {preset}"
                if preset
                else f"default {defaults[f.name]!r}"
            )
        else:
            default = f"default {f.default!r}"
        text = (help_of or {}).get(f.name) or COMMON_HELP.get(f.name) or comments.get(f.name, "")
        parser.add_argument(
            flag,
            dest=f.name,
            type=_parse(kind, flag[2:]),
            default=None,
            choices=choices_of.get(f.name),
            help=(f"{text} ({default})" if text else default).replace("%", "%%"),
        )


def config_values(args: argparse.Namespace, cls, skip: tuple[str, ...] = ()) -> dict:
    """The fields of ``cls`` (but those in ``skip``) that the command line set."""
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)
        if f.name not in skip and getattr(args, f.name, None) is not None
    }


def positive_int(text: str) -> int:
    """An argparse type for a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def list_of(kind: type, choices: tuple[str, ...] | None = None):
    """An argparse type for ``a,b,c`` lists of ``kind`` (positive for numbers, from ``choices`` for strings)."""

    def parse(text: str) -> list:
        items = [t.strip() for t in text.split(",") if t.strip()]
        try:
            values = [kind(t) for t in items]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__}s, got {text!r}"
            ) from None
        if not values:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        if choices is not None and any(v not in choices for v in values):
            bad = next(v for v in values if v not in choices)
            raise argparse.ArgumentTypeError(f"unknown value {bad!r}; choose from {', '.join(choices)}")
        if kind in (int, float) and any(v <= 0 for v in values):
            raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
        return values

    return parse


def int_pairs(sep: str, what: str, example: str) -> Callable[[str], list[list[int]]]:
    """An argparse type for ``a{sep}b,c{sep}d`` lists of positive whole-number pairs, e.g. ``8x8,16x2``.

    >>> int_pairs("x", "FRAMESxCLIPS", "8x8,16x2")("8x8,16x2")
    [[8, 8], [16, 2]]
    """

    def parse(text: str) -> list[list[int]]:
        out = []
        for item in (t.strip() for t in text.split(",") if t.strip()):
            a, found, b = item.partition(sep)
            if not (found and a.isdigit() and b.isdigit() and int(a) > 0 and int(b) > 0):
                out = []
                break
            out.append([int(a), int(b)])
        if not out:
            raise argparse.ArgumentTypeError(f"expected {what} pairs like {example}, got {text!r}")
        return out

    return parse


@dataclasses.dataclass(frozen=True)
class SweepFlag:
    """A flag that is not one field of a run (a sweep's list, a seed count): its parser, its help, and the
    settings key whose preset value is shown as its default (the flag's name by default) or ``fallback``."""

    flag: str
    type: Callable[[str], object]
    help: str
    fallback: object = None
    key: str | None = None


SEEDS = SweepFlag("--seeds", positive_int, "seeds per cell (mean ± std), from --seed on", 1)


def shown_default(value: object) -> str:
    """A default as a user would type it: ``32,2`` for a list, ``32:2,2:2`` for a dict."""
    if isinstance(value, list | tuple):
        return ",".join("x".join(map(str, v)) if isinstance(v, list | tuple) else str(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}:{v}" for k, v in value.items()) or "none"
    return str(value)


def add_sweep_flags(group, flags: tuple[SweepFlag, ...], values: dict) -> None:
    """Add ``flags`` to ``group``, each help ending with the default ``values`` (a preset's) give it."""
    for f in flags:
        key = f.key or f.flag[2:].replace("-", "_")
        default = shown_default(values.get(key, f.fallback))
        group.add_argument(f.flag, type=f.type, help=f"{f.help} (default {default})".replace("%", "%%"))
