"""Process-wide floating-point state and non-finite inputs."""

from __future__ import annotations

import subprocess
import sys

import torch
import torch.nn.functional as F

from groupnorm.ops.cpu import kernels

DENORMAL_SCRIPT = """
import torch, groupnorm, groupnorm.ops, groupnorm.ops.cpu
from groupnorm.ops import registry
x = torch.randn(2, 32, 16, 16)
assert registry.select(x).name == "cpu-c", registry.select(x).name
torch.ops.groupnorm.forward(x, None, None, 8, 1e-5, "silu", None, None, None)
tiny = torch.tensor([1e-39], dtype=torch.float32)
assert float(tiny * 1.0) != 0.0, "flush-to-zero is on"
assert float(tiny) != 0.0, "denormals-are-zero is on"
print("ok")
"""


def test_denormals_survive_import_and_kernel_call(kernel_lib):
    proc = subprocess.run(
        [sys.executable, "-c", DENORMAL_SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


def test_nan_and_inf_propagate_like_torch(kernel_lib):
    x = torch.randn(2, 32, 8, 8)
    x[0, 0, 3, 3] = float("nan")  # group 0 of sample 0
    x[0, 9, 1, 2] = float("inf")  # group 2 of sample 0
    x[1, 30, 0, 0] = -float("inf")  # group 7 of sample 1
    for layout in (torch.contiguous_format, torch.channels_last):
        xl = x.contiguous(memory_format=layout)
        for act in ("none", "silu", "gelu"):
            y, _, _ = kernels.forward(xl, None, None, 8, 1e-5, act, None, None, None)
            ref = F.group_norm(xl, 8)
            ref = {"none": ref, "silu": F.silu(ref), "gelu": F.gelu(ref)}[act]
            assert torch.equal(torch.isnan(y), torch.isnan(ref)), (layout, act)
            assert torch.equal(torch.isinf(y), torch.isinf(ref)), (layout, act)
            finite = torch.isfinite(ref)
            torch.testing.assert_close(y[finite], ref[finite], atol=1e-5, rtol=1e-5)


def test_activations_of_non_finite_pre_activations(kernel_lib):
    # the fused epilogue meets +-inf and NaN through the shift; compare with torch's activation of the same values
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), 100.0, -100.0, 0.0, 1e-3, -20.0])
    x = torch.randn(1, 8, 4, 4)
    shift = special.reshape(1, 8)
    for act, fn in (("none", lambda t: t), ("relu", F.relu), ("silu", F.silu)):
        y, _, _ = kernels.forward(x, None, None, 2, 1e-5, act, None, None, shift)
        ref = fn(F.group_norm(x, 2) + shift.reshape(1, 8, 1, 1))
        assert torch.equal(torch.isnan(y), torch.isnan(ref)), act
        torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5, equal_nan=True)
