"""Every registered implementation (and the plain-torch fallback) against the conformance suite of
``groupnorm.testing``: forward and backward, every epilogue, affine or not, both layouts, fp32/fp16/bf16, on the
named shapes. Triton's launchers go through the same cases on each planner path in
tests/triton/test_triton_conformance.py (through the interpreter where there is no GPU)."""

import dataclasses
import itertools

import pytest
import torch

import groupnorm.ops  # noqa: F401  (registers the implementations)
from groupnorm import env
from groupnorm.activations import ACTIVATIONS
from groupnorm.ops import torch_impl
from groupnorm.ops import triton as triton_kernels
from groupnorm.ops.cpu import loader
from groupnorm.testing import (
    EPILOGUES,
    PRECISIONS,
    ConformanceCase,
    NamedShape,
    check_case,
    conformance_cases,
    implementations_under_test,
    run_conformance,
    shape_layout_cases,
)

CASES = conformance_cases()


def _targets() -> list:
    params = []
    for target in implementations_under_test():
        is_triton = target.implementation.name == triton_kernels.IMPLEMENTATION_NAME
        params.append(pytest.param(target, id=str(target), marks=[pytest.mark.triton] if is_triton else []))
    return params


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("target", _targets())
def test_implementation_conforms(target, case):
    impl = target.implementation
    probe = case.inputs()["x"].to(target.device)
    if not impl.supports(probe):
        if impl.name == "cpu-c" and loader.library() is None and not env.TEST_ALLOW_NO_KERNELS.get():
            pytest.fail(
                f"the CPU kernel library did not load ({loader.error()}); {env.TEST_ALLOW_NO_KERNELS.name}=1 skips"
            )
        pytest.skip(f"{impl.name} does not serve this input here")
    check_case(impl.forward, impl.backward, case, device=target.device, name=str(target))


@pytest.mark.triton
def test_triton_is_under_test_where_it_can_run():
    if not triton_kernels.available():
        pytest.skip(
            "the Triton kernels register only with CUDA and Triton; tests/triton/test_triton_conformance.py "
            "runs the suite's cases on them through the interpreter"
        )
    names = [t.implementation.name for t in implementations_under_test()]
    assert triton_kernels.IMPLEMENTATION_NAME in names


def test_pairs_meet_every_pair_of_values():
    shapes = [str(named) + layout for named, layout in shape_layout_cases()]
    seen = {(str(c.shape) + c.layout, c.precision.name, c.epilogue.name) for c in CASES}
    factors = (shapes, [p.name for p in PRECISIONS], [e.name for e in EPILOGUES])
    for a, b in itertools.combinations(range(3), 2):
        wanted = set(itertools.product(factors[a], factors[b]))
        assert {(s[a], s[b]) for s in seen} == wanted, f"factors {a} and {b}"


def test_each_has_every_value_at_least_once():
    cases = conformance_cases(combinations="each", max_numel=1000)
    small = [(n, lay) for n, lay in shape_layout_cases() if torch.Size(n.shape).numel() <= 1000]
    assert {(c.shape, c.layout) for c in cases} == set(small)
    assert {c.precision for c in cases} == set(PRECISIONS)
    assert {c.epilogue for c in cases} == set(EPILOGUES)


def test_every_activation_and_optional_input_has_a_case():
    assert {e.activation for e in EPILOGUES} == set(ACTIVATIONS)
    for part in ("weight", "bias", "residual", "scale", "shift"):
        assert {getattr(e, part) for e in EPILOGUES} == {True, False}, part


# The suite must be able to fail: the plain-torch implementation, wrapped to be wrong in one way at a time.
_SMALL = ConformanceCase(
    NamedShape((2, 8, 3, 5), 2, "small"),
    "channels_last",
    PRECISIONS[0],
    next(e for e in EPILOGUES if e.name == "silu+residual+scale+shift"),
)


def _forward_off_by(delta):
    def forward(*args):
        y, mean, rstd = torch_impl.forward(*args)
        return y + delta, mean, rstd

    return forward


def _forward_contiguous(*args):
    y, mean, rstd = torch_impl.forward(*args)
    return y.contiguous(), mean, rstd


def _forward_stats_in_float64(*args):
    y, mean, rstd = torch_impl.forward(*args)
    return y, mean.double(), rstd


def _backward_scaled(index, factor):
    def backward(*args):
        grads = list(torch_impl.backward(*args))
        grads[index] = grads[index] * factor
        return tuple(grads)

    return backward


def _backward_gradient_for_absent_bias(*args):
    grads = list(torch_impl.backward(*args))
    grads[2] = torch.zeros(args[1].shape[1])
    return tuple(grads)


@pytest.mark.parametrize(
    "forward,backward,case,message",
    [
        (_forward_off_by(1e-3), torch_impl.backward, _SMALL, "y:"),
        (_forward_contiguous, torch_impl.backward, _SMALL, "y has strides"),
        (_forward_stats_in_float64, torch_impl.backward, _SMALL, "mean is torch.float64"),
        (torch_impl.forward, _backward_scaled(0, 1.001), _SMALL, "dx:"),
        (torch_impl.forward, _backward_scaled(4, 0.999), _SMALL, "dscale:"),
        (
            torch_impl.forward,
            _backward_gradient_for_absent_bias,
            dataclasses.replace(_SMALL, epilogue=next(e for e in EPILOGUES if e.name == "weight-only")),
            "dbias must be empty",
        ),
    ],
    ids=["y-off", "y-layout", "stats-dtype", "dx-off", "dscale-off", "dbias-not-empty"],
)
def test_the_suite_catches_a_wrong_implementation(forward, backward, case, message):
    check_case(torch_impl.forward, torch_impl.backward, case)  # the unwrapped one passes
    with pytest.raises(AssertionError, match=message):
        check_case(forward, backward, case)


def test_run_conformance_lists_every_failing_case():
    cases = conformance_cases(combinations="each", max_numel=100)
    with pytest.raises(AssertionError, match=rf"^{len(cases)} conformance case\(s\) failed"):
        run_conformance(_forward_off_by(1.0), torch_impl.backward, cases)
