"""``PatchReport``: what :func:`groupnorm.patch` swapped, fused and left alone, and why."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PatchReport:
    """What :func:`groupnorm.patch` changed.

    * ``swapped`` — paths of the GroupNorms moved onto :class:`groupnorm.GroupNorm`;
    * ``fused`` — ``(norm path, activation path, activation name, how)`` for each activation now computed inside
      its GroupNorm's call (``how`` names the rewrite: a block class, ``"Sequential"`` or ``"fx"``);
    * ``left`` — ``(norm path, reason)`` for each GroupNorm that computes no fused activation;
    * ``already`` — paths of the GroupNorms that computed a fused activation before the call (a model patched
      already, or built with fused norms);
    * ``traced`` / ``trace_error`` — whether the ``torch.fx`` rewrite ran, and why not.

    ``str(report)`` is a readable summary: the counts, then one line per fusion and per GroupNorm left.
    """

    swapped: list[str] = field(default_factory=list)
    fused: list[tuple[str, str, str, str]] = field(default_factory=list)
    left: list[tuple[str, str]] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    traced: bool = False
    trace_error: str | None = None

    @property
    def changed(self) -> bool:
        """Whether ``patch`` changed the model at all."""
        return bool(self.swapped or self.fused)

    def __str__(self) -> str:
        if not self.changed:
            what = [f"{len(self.already)} GroupNorm(s) fused already"] if self.already else []
            what += [f"{len(self.left)} GroupNorm(s) left as they are"] if self.left else []
            lines = [f"patch: nothing to fuse, model unchanged ({', '.join(what) or 'no GroupNorm found'})"]
        elif not self.fused:
            lines = [f"patch: nothing to fuse; {len(self.swapped)} GroupNorm(s) moved to groupnorm.GroupNorm"]
        else:
            lines = [
                f"patch: {len(self.swapped)} GroupNorm(s) moved to groupnorm.GroupNorm, "
                f"{len(self.fused)} activation(s) fused, {len(self.left)} left without one"
            ]
        lines += [
            f"  fused {norm or '<root>'} + {act} ({name}, {how})" for norm, act, name, how in self.fused
        ]
        lines += [f"  left {path or '<root>'}: {reason}" for path, reason in self.left]
        if self.trace_error:
            lines.append(f"  graph rewrite skipped ({self.trace_error})")
        return "\n".join(lines)
