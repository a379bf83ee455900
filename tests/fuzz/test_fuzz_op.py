"""Property tests: every implementation present agrees with the float64 reference on random calls.

Shapes (rank 2-5, sizes including 1 and an empty batch), group counts, dtypes, layouts (contiguous, channels_last,
strided views), every epilogue and eps are drawn by hypothesis. The budget is ``GROUPNORM_FUZZ_EXAMPLES``
(default 40 per test, enough for CI); run a large budget with e.g. ``GROUPNORM_FUZZ_EXAMPLES=2000``.
"""

import pytest
import torch

from groupnorm import env
from groupnorm.ops import registry
from groupnorm.testing import TOLERANCES, assert_close_verbose, call_reference, op_calls, rounding_floor

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

EXAMPLES = env.FUZZ_EXAMPLES.get()
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


def _positional(call):
    keys = ("x", "weight", "bias", "num_groups", "eps", "activation", "residual", "scale", "shift")
    return [call[k] for k in keys]


def cpu_implementations():
    """The plain-torch fallback and every kernel registered for the CPU."""
    return [registry.fallback(), *registry.implementations("cpu")]


@pytest.mark.parametrize("impl", cpu_implementations(), ids=lambda impl: impl.name)
@FUZZ_SETTINGS
@given(call=op_calls())
def test_forward_matches_reference(impl, call):
    x = call["x"]
    if not impl.supports(x):
        return
    y, mean, rstd = impl.forward(*_positional(call))
    atol, rtol = TOLERANCES[x.dtype]
    assert y.shape == x.shape and y.dtype == x.dtype
    assert mean.shape == rstd.shape == (x.shape[0], call["num_groups"])
    # The epilogue can grow values a few times over unit scale; tolerances are for order-one values.
    atol = 4 * atol + 4 * rounding_floor(mean, rstd)
    assert_close_verbose(y, call_reference(call), atol=atol, rtol=2 * rtol, name=f"{impl.name} y")


@pytest.mark.parametrize("impl", cpu_implementations(), ids=lambda impl: impl.name)
@FUZZ_SETTINGS
@given(call=op_calls(dtypes=(torch.float32, torch.float64)))
def test_backward_matches_reference_autograd(impl, call):
    x = call["x"]
    if not impl.supports(x) or x.numel() == 0:
        return
    args = _positional(call)
    y, mean, rstd = impl.forward(*args)
    grad_y = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(x.dtype)
    mask = [True] * 6
    x_, w, b, g, _eps, act, r, s, t = args
    grads = impl.backward(grad_y, x_, w, b, mean, rstd, g, act, r, s, t, mask)

    names = ("x", "weight", "bias", "residual", "scale", "shift")
    leaves = {k: call[k].detach().double().requires_grad_() for k in names if call[k] is not None}
    ref_call = dict(call, **leaves)
    expected = torch.autograd.grad(call_reference(ref_call), list(leaves.values()), grad_y.double())
    expected_by_name = dict(zip(leaves, expected))
    tol = 1e-9 if x.dtype == torch.float64 else 3e-4
    for name, got in zip(names, grads):
        if call[name] is None:
            assert got.numel() == 0, f"{name}: gradient for an absent input"
            continue
        want = expected_by_name[name]
        # Sums over many terms: widen the tolerance with the number of terms summed.
        terms = max(1, x.numel() // max(1, want.numel()))
        atol = tol * terms**0.5
        if name == "x":
            # dx = rstd * (g - mean(g) - x_hat * mean(g * x_hat)): the terms are of size rstd * |g|, and for a
            # group with std ~ sqrt(eps) they cancel almost exactly, so float32 rounding is relative to rstd.
            atol *= max(1.0, float(rstd.max()))
        assert_close_verbose(got, want, atol=atol, rtol=tol, name=f"{impl.name} d{name}")
