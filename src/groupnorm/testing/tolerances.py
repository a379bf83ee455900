"""How close to the float64 reference an implementation must be: one (atol, rtol) per dtype, and the rule that
scales it for gradients."""

from __future__ import annotations

import torch

# (atol, rtol) for values of order one, by dtype: fp16/bf16 are bounded by their rounding of y itself.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (2e-5, 1e-5),
    torch.float16: (4e-3, 4e-3),
    torch.bfloat16: (3e-2, 2e-2),
}


def gradient_tolerance(
    dtype: torch.dtype, expected: torch.Tensor, *, rstd: torch.Tensor | None = None
) -> tuple[float, float]:
    """(atol, rtol) for a gradient of ``dtype`` whose reference is ``expected``.

    Gradients are sums over many terms (dweight over N times the spatial size, dx of differences of means), so
    their rounding error follows the size of the terms, not of the result: ``atol`` grows with the largest
    reference value (never below the dtype's own). dx is ``rstd`` times differences of terms of the size of
    ``weight * grad_y``; pass the forward's ``rstd`` for dx, so that groups whose variance is all ``eps`` (one
    element each: dx is exactly zero, its rounding ``rstd`` times an ulp) get room for that factor.
    """
    atol, rtol = TOLERANCES[dtype]
    largest = float(expected.detach().abs().max()) if expected.numel() else 0.0
    if rstd is not None and rstd.numel():
        largest = max(largest, float(rstd.detach().abs().max()))
    return atol * max(1.0, largest), rtol


def rounding_floor(mean: torch.Tensor, rstd: torch.Tensor) -> float:
    """The error of x_hat that float32 statistics cannot avoid: mean held in float32 is off by up to half an ulp
    of |mean|, which x_hat = (x - mean) * rstd scales by rstd. Negligible until |mean| / std is in the thousands.
    """
    if mean.numel() == 0 or mean.dtype == torch.float64:
        return 0.0
    return float((mean.abs().float() * rstd.float()).max()) * 2.0**-24
