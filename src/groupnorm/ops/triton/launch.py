"""Launchers: the op's forward/backward signatures on top of the Triton kernels (the names the rest imports).

They take exactly the registered ops' arguments (see ``groupnorm.ops.op``), plus two keywords the tests use to
force every path on any machine: ``device`` (SM count and L2 size for the planner) and ``tuning``. They run on
CUDA tensors and, with ``TRITON_INTERPRET=1`` set before this module is imported, on CPU tensors.

No host synchronization and no memset: workspaces are ``torch.empty`` and every slot is written before it is read,
so the launchers are safe to capture in a CUDA graph.

Where each part lives: ``layout`` (which tensors the kernels take, layout keys), ``devices`` (the planner's view
of the GPU, making it current), ``launch_plan`` (which kernels run, with what grids: pure Python),
``launch_setup`` (what both launchers set up once per layout key), ``forward_launcher`` / ``backward_launcher``
(run a plan on the call's tensors, cached per layout key), ``param_grads`` (the backward's parameter gradients),
``summary`` (what a call would launch).

Example (CPU, interpreter)::

    $ TRITON_INTERPRET=1 python -c "
    import torch
    from groupnorm.ops.triton import launch
    y, mean, rstd = launch.forward(torch.randn(2, 8, 5, 5), None, None, 4, 1e-5, 'silu', None, None, None)"
"""

from __future__ import annotations

from groupnorm.ops.triton.backward_launcher import BackwardLaunch, backward, backward_launch
from groupnorm.ops.triton.devices import INTERPRETER_DEVICE, device_spec
from groupnorm.ops.triton.forward_launcher import ForwardLaunch, forward, forward_launch
from groupnorm.ops.triton.layout import SUPPORTED_DTYPES, plan_for, supports
from groupnorm.ops.triton.summary import launch_summary

__all__ = [
    "INTERPRETER_DEVICE",
    "SUPPORTED_DTYPES",
    "BackwardLaunch",
    "ForwardLaunch",
    "backward",
    "backward_launch",
    "device_spec",
    "forward",
    "forward_launch",
    "launch_summary",
    "plan_for",
    "supports",
]
