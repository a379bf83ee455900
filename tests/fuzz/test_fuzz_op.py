"""Property tests: every implementation present agrees with the float64 reference on random calls.

Shapes (rank 2-5, sizes including 1 and an empty batch), group counts, dtypes, layouts (contiguous, channels_last,
strided views), every epilogue and eps are drawn by hypothesis. The budget is ``GROUPNORM_FUZZ_EXAMPLES``
(default 40 per test, enough for CI); run a large budget with e.g. ``GROUPNORM_FUZZ_EXAMPLES=2000``.
"""

import os

import pytest
import torch

from groupnorm.activations import ACTIVATIONS
from groupnorm.ops import registry
from groupnorm.reference import group_norm_ref
from groupnorm.testing import TOLERANCES, assert_close_verbose

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get("GROUPNORM_FUZZ_EXAMPLES", "40"))
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


def cpu_implementations():
    """The plain-torch fallback and every kernel registered for the CPU."""
    return [registry.fallback(), *registry.implementations("cpu")]


@st.composite
def calls(draw, dtypes=(torch.float32, torch.float64, torch.bfloat16, torch.float16)):
    rank = draw(st.integers(2, 5))
    groups = draw(st.integers(1, 6))
    channels = groups * draw(st.integers(1, 5))
    n = draw(st.sampled_from([0, 1, 1, 2, 3]))
    spatial = tuple(draw(st.lists(st.integers(1, 6), min_size=rank - 2, max_size=rank - 2)))
    shape = (n, channels, *spatial)
    dtype = draw(st.sampled_from(dtypes))
    layout = draw(st.sampled_from(["contiguous", "channels_last", "strided"]))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    offset = draw(st.sampled_from([0.0, 3.0, -50.0]))
    if layout == "strided":  # every other element of the last dimension: a view with no dense layout
        big = torch.randn((*shape[:-1], 2 * shape[-1]), generator=gen, dtype=torch.float64)
        x = (big + offset).to(dtype)[..., ::2]
    else:
        x = (torch.randn(shape, generator=gen, dtype=torch.float64) + offset).to(dtype)
        if layout == "channels_last" and rank == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        elif layout == "channels_last" and rank == 5:
            x = x.contiguous(memory_format=torch.channels_last_3d)
    param_dtype = draw(st.sampled_from([dtype, torch.float64 if dtype == torch.float64 else torch.float32]))

    def maybe(make):
        return make() if draw(st.booleans()) else None

    return {
        "x": x,
        "weight": maybe(lambda: torch.randn(channels, generator=gen).to(param_dtype)),
        "bias": maybe(lambda: torch.randn(channels, generator=gen).to(param_dtype)),
        "num_groups": groups,
        "eps": draw(st.sampled_from([1e-5, 1e-3, 0.1, 1e-6])),
        "activation": draw(st.sampled_from(ACTIVATIONS)),
        "residual": maybe(lambda: torch.randn(shape, generator=gen).to(dtype)),
        "scale": maybe(lambda: (0.5 * torch.randn(n, channels, generator=gen)).to(param_dtype)),
        "shift": maybe(lambda: torch.randn(n, channels, generator=gen).to(param_dtype)),
    }


def _positional(call):
    keys = ("x", "weight", "bias", "num_groups", "eps", "activation", "residual", "scale", "shift")
    return [call[k] for k in keys]


def _reference(call):
    return group_norm_ref(
        call["x"],
        call["num_groups"],
        call["weight"],
        call["bias"],
        call["eps"],
        activation=call["activation"],
        residual=call["residual"],
        scale=call["scale"],
        shift=call["shift"],
    )


@pytest.mark.parametrize("impl", cpu_implementations(), ids=lambda impl: impl.name)
@FUZZ_SETTINGS
@given(call=calls())
def test_forward_matches_reference(impl, call):
    x = call["x"]
    if not impl.supports(x):
        return
    y, mean, rstd = impl.forward(*_positional(call))
    atol, rtol = TOLERANCES[x.dtype]
    assert y.shape == x.shape and y.dtype == x.dtype
    assert mean.shape == rstd.shape == (x.shape[0], call["num_groups"])
    # The epilogue can grow values a few times over unit scale; tolerances are for order-one values.
    assert_close_verbose(y, _reference(call), atol=4 * atol, rtol=2 * rtol, name=f"{impl.name} y")


@pytest.mark.parametrize("impl", cpu_implementations(), ids=lambda impl: impl.name)
@FUZZ_SETTINGS
@given(call=calls(dtypes=(torch.float32, torch.float64)), data=st.data())
def test_backward_matches_reference_autograd(impl, call, data):
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
    expected = torch.autograd.grad(_reference(ref_call), list(leaves.values()), grad_y.double())
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
