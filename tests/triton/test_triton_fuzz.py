"""Property tests of the Triton kernels (through the interpreter on CPU) against the float64 reference.

The same random calls as tests/fuzz, on every path of the planner. The interpreter is slow, so the budget is
``GROUPNORM_TRITON_FUZZ_EXAMPLES`` (default 12 per path).
"""

import pytest
import torch

from groupnorm import env
from groupnorm.testing import TOLERANCES, assert_close_verbose, call_reference, op_calls, rounding_floor

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

EXAMPLES = env.TRITON_FUZZ_EXAMPLES.get()


@pytest.mark.triton
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(call=op_calls(dtypes=(torch.float32, torch.bfloat16, torch.float16)))
def test_forward_matches_reference(kernels, path, call):
    from groupnorm.ops.triton import launch

    x = call["x"]
    if not launch.supports(x) or x.numel() == 0:
        return
    args = {k: v for k, v in call.items() if k != "x"}
    y, mean, rstd = kernels.forward(x, path=path, **args)
    atol, rtol = TOLERANCES[x.dtype]
    assert y.shape == x.shape and y.dtype == x.dtype and y.stride() == x.stride()
    atol = 4 * atol + 4 * rounding_floor(mean, rstd)
    assert_close_verbose(y, call_reference(call), atol=atol, rtol=2 * rtol, name=f"triton {path} y")


@pytest.mark.triton
@settings(
    max_examples=max(1, EXAMPLES // 2),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(call=op_calls(dtypes=(torch.float32,)))
def test_backward_matches_reference_autograd(kernels, path, call):
    from groupnorm.ops.triton import launch

    x = call["x"]
    if not launch.supports(x) or x.numel() == 0:
        return
    args = {k: v for k, v in call.items() if k != "x"}
    _, mean, rstd = kernels.forward(x, path=path, **args)
    grad_y = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    grads = kernels.backward(
        grad_y,
        x,
        call["weight"],
        call["bias"],
        mean,
        rstd,
        call["num_groups"],
        call["activation"],
        call["residual"],
        call["scale"],
        call["shift"],
        path=path,
    )
    names = ("x", "weight", "bias", "residual", "scale", "shift")
    leaves = {k: call[k].detach().double().requires_grad_() for k in names if call[k] is not None}
    expected = dict(
        zip(
            leaves,
            torch.autograd.grad(call_reference(dict(call, **leaves)), list(leaves.values()), grad_y.double()),
        )
    )
    for name, got in zip(names, grads):
        if call[name] is None:
            continue
        terms = max(1, x.numel() // max(1, expected[name].numel()))
        atol = 3e-4 * terms**0.5 * (max(1.0, float(rstd.max())) if name == "x" else 1.0)
        assert_close_verbose(got, expected[name], atol=atol, rtol=3e-4, name=f"triton {path} d{name}")
