"""Command-line flags from a config dataclass: one ``--field-name`` per scalar field, typed by its annotation.

The transfer commands (``groupnorm repro detection``, ``groupnorm repro video``) take their hyper-parameters this
way, so a new field of the dataclass is a new flag with no parser code; presets are dicts of the same names.

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
import typing


def _parse(kind: type, name: str):
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--{name}: expected {kind.__name__}, got {text!r}") from None

    return parse


def _scalar_type(annotation) -> type | None:
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    return args[0] if len(args) == 1 and args[0] in (int, float, str) else None


def add_config_flags(parser, cls, skip: tuple[str, ...] = (), help_of: dict[str, str] | None = None) -> None:
    """A ``--field-name`` flag for each int/float/str field of dataclass ``cls`` not in ``skip``."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = _scalar_type(hints[f.name])
        if f.name in skip or kind is None:
            continue
        flag = "--" + f.name.replace("_", "-")
        parser.add_argument(flag, dest=f.name, type=_parse(kind, flag[2:]), default=None,
                            help=(help_of or {}).get(f.name, f"default {f.default!r}"))  # fmt: skip


def config_values(args: argparse.Namespace, cls) -> dict:
    """The fields of ``cls`` that the command line set."""
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)
        if getattr(args, f.name, None) is not None
    }


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
