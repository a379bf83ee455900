"""What every experiment's run settings share: :class:`RunConfig`, the base of ``HParams`` (classification),
``DetectionConfig`` and ``VideoConfig``.

A run config is a frozen dataclass. The base gives it one way to be recorded (``to_dict``: the fields, tuples as
lists, and the learning rate the run uses), to be read back (``from_dict``, which ignores keys it does not know,
so a record with derived values loads), to name its run folder (``run_id``: a readable part from
``run_name()`` and a digest of ``to_dict()``, so two configs share a folder only when every value is the same) and
to check its values (``check``: the messages name the field and the value). Its ``CHOICES`` table is also what
the command line offers for those fields.

Example::

    @dataclass(frozen=True)
    class MyConfig(RunConfig):
        CHOICES: ClassVar[dict] = {"norm": ("bn", "gn")}
        norm: str = "gn"
        steps: int = 100
        base_lr: float = 0.1

        def __post_init__(self) -> None:
            self.check(at_least_one=("steps",), positive=("base_lr",))

        @property
        def lr(self) -> float:
            return self.base_lr

        def run_name(self) -> str:
            return f"{self.norm}_s{self.steps}"

    MyConfig(norm="gn").run_id()          # 'gn_s100_' + 8 hex digits
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, ClassVar


class RunConfig:
    """Base of the frozen dataclasses that hold one run's settings; see the module docstring."""

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {}

    # ---- records --------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every field (tuples as lists, as JSON has them) and ``lr``, the learning rate the run uses."""
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        d["lr"] = self.lr
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """The config of a record written by :meth:`to_dict` (keys that are not fields are ignored)."""
        kw = {}
        for f in dataclasses.fields(cls):
            if f.name in d:
                value = d[f.name]
                kw[f.name] = (
                    tuple(value) if isinstance(f.default, tuple) and isinstance(value, list) else value
                )
        return cls(**kw)

    def digest(self) -> str:
        """8 hex digits of every value: a change of any setting is another run."""
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:8]

    def run_name(self) -> str:
        """The readable part of the run's folder name."""
        raise NotImplementedError

    def run_id(self) -> str:
        """A readable, unique folder name for this run: ``run_name()`` and :meth:`digest`."""
        return f"{self.run_name()}_{self.digest()}"

    @property
    def lr(self) -> float:
        raise NotImplementedError

    @property
    def rounds(self) -> int:
        """How many epochs or rounds of training the run has (each ends with a checkpoint and an evaluation)."""
        raise NotImplementedError

    # ---- checks ---------------------------------------------------------------------------------------------
    def check(
        self,
        *,
        at_least_one: tuple[str, ...] = (),
        optional_at_least_one: tuple[str, ...] = (),
        positive: tuple[str, ...] = (),
        non_negative: tuple[str, ...] = (),
    ) -> None:
        """``ValueError`` naming the field and its value for the first one out of range, and for a field of
        :attr:`CHOICES` with a value not offered."""
        for name, choices in self.CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise ValueError(f"{name}: unknown value {value!r}; choose from {', '.join(choices)}")
        for name in at_least_one:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in optional_at_least_one:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
