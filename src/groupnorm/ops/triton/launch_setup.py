"""What the forward and backward launchers share: the set-up of a launch description, done once per layout key.

Both launchers check x's layout, plan for the call's device, give the kernels the call's epilogue flags and keep
the same handful of facts for the per-call path (the scalar arguments, whether the residual is copied, the GPU to
make current). That set-up is here; what differs (the plan asked for, the gradients wanted) stays in each launcher.

Example::

    >>> import torch
    >>> from groupnorm.ops.triton import layout
    >>> setup(layout.key(torch.empty(2, 8, 5, 5)), torch.device("cpu"), 4, None).groups
    Groups(batch=2, channels=8, spatial=25, num_groups=4, per_group=2)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch

from groupnorm.ops.triton import layout
from groupnorm.ops.triton.devices import cuda_index, spec_for
from groupnorm.ops.triton.geometry import Groups, TensorLayout
from groupnorm.ops.triton.launch_plan import BackwardPlan, ForwardPlan, Launch
from groupnorm.ops.triton.planner import DeviceSpec, Plan

# One kernel launch as the launchers keep it: kernel name, grid, first unit, keyword (constexpr) arguments.
Step = tuple[str, tuple[int, ...], int, dict[str, object]]


class Setup(NamedTuple):
    """x's groups and layout as the planner sees it, and the device the plan is for."""

    groups: Groups
    x: TensorLayout
    device: DeviceSpec


def setup(x: tuple, x_device: torch.device, num_groups: int, device: DeviceSpec | None) -> Setup:
    """Check the layout of ``x`` (a :func:`layout.key`; ValueError naming what the kernels cannot take) and return
    what a plan is made from; ``device`` defaults to ``x_device``'s own."""
    xm = layout.meta_like(x)
    groups = layout.check(xm, num_groups)
    return Setup(groups, layout.tensor_layout(xm), device or spec_for(x_device))


def epilogue_flags(has: tuple[bool, bool, bool, bool], has_residual: bool, act: int) -> dict[str, object]:
    """The epilogue's constexpr arguments: which of weight, bias, scale, shift (``has``) and residual are given,
    and the activation's code."""
    has_w, has_b, has_scale, has_shift = has
    return dict(
        HAS_W=has_w, HAS_B=has_b, HAS_SCALE=has_scale, HAS_SHIFT=has_shift, HAS_RES=has_residual, ACT=act
    )  # fmt: skip


def bind_steps(launches: tuple[Launch, ...], call_flags: Mapping[str, dict[str, object]]) -> list[Step]:
    """The plan's ``launches`` as steps, each kernel's keywords being the call's flags for it (``call_flags``,
    by kernel name) and the plan's block constants."""
    return [(s.kernel, s.grid, s.start, {**call_flags[s.kernel], **s.meta}) for s in launches]


class LaunchDescription:
    """What a call of one layout needs besides the tensors, as both launchers keep it; the launchers' own
    descriptions add their fields."""

    __slots__ = ("schedule", "steps", "scalars", "strides", "res_copy", "cuda_index")

    def __init__(
        self,
        schedule: ForwardPlan | BackwardPlan,
        groups: Groups,
        num_groups: int,
        residual: tuple | None,
        x_device: torch.device,
    ) -> None:
        self.schedule = schedule
        blocks = schedule.work.group_blocks
        self.scalars = (groups.channels, groups.spatial, num_groups, groups.per_group, blocks)
        self.res_copy = layout.needs_copy(residual)
        self.cuda_index = cuda_index(x_device)

    @property
    def plan(self) -> Plan:
        """The work split."""
        return self.schedule.work

    @property
    def flat(self) -> bool:
        """Whether the flat kernel runs (for the backward, also when nothing is wanted and nothing launches)."""
        return self.schedule.variant == "flat"

    def launches(self) -> int:
        """Kernel launches per call."""
        return self.schedule.launch_count
