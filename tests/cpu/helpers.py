"""Comparison helpers for the CPU kernel tests."""

from __future__ import annotations

import torch

from groupnorm.reference import group_norm_ref

# dtype -> (atol, rtol) against the float64 reference, scaled by the reference's magnitude
TOLERANCES = {
    torch.float32: (2e-5, 2e-5),
    torch.float16: (4e-3, 4e-3),
    torch.bfloat16: (3e-2, 3e-2),
}


def assert_close_verbose(
    actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float, what: str
) -> None:
    """allclose that says how many elements differ, the worst one and where."""
    a, e = actual.double(), expected.double()
    assert a.shape == e.shape, f"{what}: shape {tuple(a.shape)} != {tuple(e.shape)}"
    both_nan = torch.isnan(a) & torch.isnan(e)
    err = (a - e).abs().masked_fill(both_nan, 0)
    bound = atol + rtol * e.abs().masked_fill(both_nan, 0)
    bad = ~(err <= bound)
    if bad.any():
        idx = int(torch.argmax((err - bound).masked_fill(~bad, -1).flatten()))
        where = tuple(int(i) for i in torch.unravel_index(torch.tensor(idx), a.shape))
        raise AssertionError(
            f"{what}: {int(bad.sum())}/{a.numel()} elements differ; worst at {where}: "
            f"got {a.flatten()[idx].item():.6g}, expected {e.flatten()[idx].item():.6g} "
            f"(|err| {err.flatten()[idx].item():.3g} > {bound.flatten()[idx].item():.3g})"
        )


def reference_with_grads(x, groups, weight, bias, eps, activation, residual, scale, shift, grad):
    """float64 output and gradients (x, weight, bias, residual, scale, shift) by autograd on the reference."""
    leaves = [None if t is None else t.detach().double().requires_grad_(True)
              for t in (x, weight, bias, residual, scale, shift)]  # fmt: skip
    xd, wd, bd, rd, sd, hd = leaves
    y = group_norm_ref(xd, groups, wd, bd, eps, activation=activation, residual=rd, scale=sd, shift=hd)
    present = [t for t in leaves if t is not None]
    grads = iter(torch.autograd.grad(y, present, grad.double()))
    return y.detach(), [None if t is None else next(grads) for t in leaves]
