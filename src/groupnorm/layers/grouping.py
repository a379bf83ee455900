"""How many groups a GroupNorm over C channels gets: the request, the fallback policy and the ``"auto"`` rule.

Three ways to ask, resolved by :func:`resolve_groups`:

* ``num_groups=G`` — exactly G groups; C must be divisible by G (an error that names C and G otherwise).
* ``group_size=S`` — S channels per group; C must be divisible by S.
* ``num_groups="auto"`` — the documented default of :mod:`groupnorm.models`: the paper's G = 32 wherever that
  leaves at least 2 channels per group (C divisible by 32 and C >= 64), and in narrower layers groups of 16
  channels, the paper's best fixed-channels setting (Table 3, 24.2 % error). Precisely: G = 32 when
  ``C % 32 == 0 and C >= 64``, else G = C / s where s is the largest divisor of C that is at most 16
  (C = 16 -> 1 group, C = 32 -> 2 groups, C = 48 -> 3 groups, C = 24 -> 2 groups of 12). Never an error.

With ``fallback="gcd"`` a request that does not fit is adapted instead of refused: G becomes gcd(C, G) (for
``group_size=S``: groups of gcd(C, S) channels), then, while a group would have fewer than ``min_group_size``
channels (default 2, so a fallback never degrades silently into instance norm), the largest divisor of that count
that does keep ``min_group_size`` channels per group. Every adapted count is returned as a :class:`GroupChange`
so callers can report where the model differs from what was asked.

Example::

    >>> resolve_groups(64, num_groups=32).num_groups
    32
    >>> choice = resolve_groups(24, num_groups=32, fallback="gcd")
    >>> choice.num_groups, choice.change.reason
    (8, 'C=24 is not divisible by G=32; gcd(24, 32) = 8 groups')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

DEFAULT_NUM_GROUPS = 32
AUTO = "auto"
FALLBACKS: tuple[str, ...] = ("gcd",)


@dataclass(frozen=True)
class GroupChange:
    """A layer whose group count differs from the request (``path`` is filled in by the model converter)."""

    num_channels: int
    requested: str  # the request as written, e.g. "num_groups=32" or "group_size=16"
    num_groups: int  # the group count actually used
    reason: str
    path: str = ""

    def at(self, path: str) -> GroupChange:
        """The same change, located at module ``path``."""
        return replace(self, path=path)

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return (
            f"{where}C={self.num_channels} {self.requested} -> num_groups={self.num_groups} ({self.reason})"
        )


@dataclass(frozen=True)
class GroupChoice:
    """The resolved grouping of one layer; ``change`` is set only when it differs from an explicit request."""

    num_channels: int
    num_groups: int
    change: GroupChange | None = None

    @property
    def group_size(self) -> int:
        return self.num_channels // self.num_groups


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {name}={value!r}")
    return value


def auto_num_groups(num_channels: int) -> int:
    """The ``"auto"`` rule: 32 groups when C % 32 == 0 and C >= 64, else groups of the largest divisor of C <= 16.

    >>> [auto_num_groups(c) for c in (16, 32, 48, 64, 24, 2048)]
    [1, 2, 3, 32, 2, 32]
    """
    c = _check_positive_int("num_channels", num_channels)
    if c % DEFAULT_NUM_GROUPS == 0 and c >= 2 * DEFAULT_NUM_GROUPS:
        return DEFAULT_NUM_GROUPS
    size = max(s for s in range(1, min(c, 16) + 1) if c % s == 0)
    return c // size


def _keep_min_group_size(num_channels: int, groups: int, min_group_size: int) -> int:
    """The largest divisor of ``groups`` whose groups hold at least ``min_group_size`` channels (at least 1)."""
    for g in range(groups, 0, -1):
        if groups % g == 0 and num_channels // g >= min_group_size:
            return g
    return 1


def resolve_groups(
    num_channels: int,
    num_groups: int | str | None = None,
    group_size: int | None = None,
    *,
    fallback: str | None = None,
    min_group_size: int = 2,
    default: int | str = DEFAULT_NUM_GROUPS,
) -> GroupChoice:
    """Resolve the group count of a GroupNorm over ``num_channels`` channels (see the module docstring).

    At most one of ``num_groups`` / ``group_size``; with neither, ``default`` (32 groups) is the request.
    ``fallback=None`` refuses a count that does not divide C; ``fallback="gcd"`` adapts it and reports the
    change. ``min_group_size`` (default 2) is only enforced by the fallback.
    """
    c = _check_positive_int("num_channels", num_channels)
    _check_positive_int("min_group_size", min_group_size)
    if fallback is not None and fallback not in FALLBACKS:
        raise ValueError(f"fallback must be None or one of {FALLBACKS}, got fallback={fallback!r}")
    if num_groups is not None and group_size is not None:
        raise ValueError(
            "pass at most one of num_groups and group_size, "
            f"got num_groups={num_groups!r} and group_size={group_size!r}"
        )
    if num_groups is None and group_size is None:
        num_groups = default

    if num_groups == AUTO:
        return GroupChoice(c, auto_num_groups(c))

    if group_size is not None:
        size = _check_positive_int("group_size", group_size)
        requested = f"group_size={size}"
        if c % size == 0:
            groups = c // size
            if fallback is None or size >= min_group_size or size == c:
                return GroupChoice(c, groups)
            reason = f"groups of {size} channels are below min_group_size={min_group_size}"
        elif fallback is None:
            raise ValueError(
                f"num_channels C={c} is not divisible by group_size={size} (channels per group); "
                "pass fallback='gcd' to use groups of gcd(C, group_size) channels"
            )
        else:
            size = math.gcd(c, size)
            groups = c // size
            reason = f"C={c} is not divisible by group_size={group_size}; groups of gcd = {size} channels"
    else:
        if isinstance(num_groups, str):
            raise ValueError(f"num_groups must be a positive int or {AUTO!r}, got num_groups={num_groups!r}")
        g = _check_positive_int("num_groups", num_groups)
        requested = f"num_groups={g}"
        if c % g == 0:
            groups = g
            if fallback is None or c // g >= min_group_size:
                return GroupChoice(c, groups)
            reason = f"{c // g} channel(s) per group is below min_group_size={min_group_size}"
        elif fallback is None:
            raise ValueError(
                f"num_channels C={c} is not divisible by num_groups G={g}; "
                "pass fallback='gcd' to use gcd(C, G) groups, or choose a divisor of C"
            )
        else:
            groups = math.gcd(c, g)
            reason = f"C={c} is not divisible by G={g}; gcd({c}, {g}) = {groups} groups"

    kept = _keep_min_group_size(c, groups, min_group_size)
    if kept != groups:
        reason += f", reduced to {kept} to keep at least {min_group_size} channels per group"
        if c < min_group_size:
            reason += f" (C={c} is below min_group_size, one group)"
    return GroupChoice(c, kept, GroupChange(c, requested, kept, reason))
