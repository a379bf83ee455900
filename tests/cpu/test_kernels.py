"""The compiled CPU kernels where they go beyond the conformance suite (tests/test_conformance.py runs them on
every named shape, epilogue, layout and dtype): output masks, non-dense inputs, a residual in another layout."""

from __future__ import annotations

import pytest
import torch

from groupnorm.ops.cpu import kernels
from groupnorm.reference import group_norm_ref
from groupnorm.testing import assert_close_verbose, reference_with_grads


def _silu_call(shape, groups, layout):
    """x with every optional input of the op, and a grad_y; x (and residual, grad_y) in ``layout``."""
    gen = torch.Generator().manual_seed(0)
    n, c = shape[:2]
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format

    def rnd(*size):
        return torch.randn(*size, generator=gen)

    x = (rnd(*shape) * 2 + 3).contiguous(memory_format=memory_format)
    args = (x, rnd(c), rnd(c), groups, 1e-5, "silu", rnd(*shape).contiguous(memory_format=memory_format))
    args += (0.5 * rnd(n, c), rnd(n, c))
    return args, rnd(*shape).contiguous(memory_format=memory_format)


@pytest.mark.parametrize(
    "mask", [[True, False, False, False, False, False], [False, True, True, False, True, True]]
)
def test_output_mask(kernel_lib, mask):
    (x, w, b, groups, eps, act, res, sc, sh), grad = _silu_call((2, 32, 5, 5), 8, "channels_last")
    y, mean, rstd = kernels.forward(x, w, b, groups, eps, act, res, sc, sh)
    full = kernels.backward(grad, x, w, b, mean, rstd, groups, act, res, sc, sh, [True] * 6)
    part = kernels.backward(grad, x, w, b, mean, rstd, groups, act, res, sc, sh, mask)
    for wanted, f, p in zip(mask, full, part):
        if wanted:
            assert torch.equal(f, p)
        else:
            assert p.numel() == 0


def test_non_dense_input_is_handled(kernel_lib):
    base = torch.randn(2, 32, 8, 16)
    x = base[..., ::2]  # strided: neither contiguous nor channels_last
    y, _, _ = kernels.forward(x, None, None, 8, 1e-5, "none", None, None, None)
    assert_close_verbose(y, group_norm_ref(x, 8), atol=2e-5, rtol=2e-5, name="y")


def test_residual_in_other_layout(kernel_lib):
    x = torch.randn(2, 32, 6, 6).contiguous(memory_format=torch.channels_last)
    res = torch.randn(2, 32, 6, 6)  # contiguous while x is channels_last
    grad = torch.randn(2, 32, 6, 6)
    y, mean, rstd = kernels.forward(x, None, None, 4, 1e-5, "silu", res, None, None)
    ref, ref_grads = reference_with_grads(x, 4, activation="silu", residual=res, grad_y=grad)
    assert_close_verbose(y, ref, atol=2e-5, rtol=2e-5, name="y")
    dx, _, _, dres, _, _ = kernels.backward(
        grad, x, None, None, mean, rstd, 4, "silu", res, None, None, [True] * 6
    )
    assert dres.stride() == res.stride()
    assert_close_verbose(dres, ref_grads[3], atol=2e-5, rtol=2e-5, name="dresidual")
    assert_close_verbose(dx, ref_grads[0], atol=1e-4, rtol=1e-4, name="dx")
