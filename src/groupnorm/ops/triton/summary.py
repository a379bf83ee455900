"""What the launchers do for an input, without launching: for benchmark rows, reports and tests.

Example::

    >>> import torch
    >>> from groupnorm.ops.triton.planner import DeviceSpec
    >>> x = torch.empty(32, 2048, 7, 7, device="meta")
    >>> s = launch_summary(x, 32, "relu", device=DeviceSpec(sm_count=132, l2_bytes=50 * 2**20))
    >>> s["forward_launches"], s["backward_launches"], s["forward_variant"]
    (1, 2, 'flat')
"""

from __future__ import annotations

import torch

from groupnorm.ops.triton import layout
from groupnorm.ops.triton.backward_launcher import backward_launch
from groupnorm.ops.triton.forward_launcher import forward_launch
from groupnorm.ops.triton.planner import DeviceSpec, Tuning


def launch_summary(
    x: torch.Tensor,
    num_groups: int,
    activation: str = "none",
    *,
    affine: bool = True,
    device: DeviceSpec | None = None,
    tuning: Tuning | None = None,
) -> dict[str, object]:
    """The forward's and backward's plans, kernel variants (``flat`` / ``tiled``), kernels in launch order and
    launches per call for input ``x``.

    The backward counted is the one for dx, dweight and dbias (``affine``) or dx alone. ``x`` may be a ``meta``
    tensor; nothing is launched.
    """
    has = (affine, affine, False, False)
    key = layout.key(x)
    fwd = forward_launch(key, x.device, num_groups, activation, has, None, device, tuning)
    mask = (True, affine, affine, False, False, False)
    bwd = backward_launch(key, key, x.device, num_groups, activation, has, None, mask, device, tuning)
    return {
        "forward_plan": fwd.plan.describe(),
        "forward_variant": fwd.schedule.variant,
        "forward_kernels": [step.kernel for step in fwd.schedule.launches],
        "forward_launches": fwd.launches(),
        "backward_plan": bwd.plan.describe(),
        "backward_variant": bwd.schedule.variant,
        "backward_kernels": [step.kernel for step in bwd.schedule.launches],
        "backward_launches": bwd.launches(),
    }
