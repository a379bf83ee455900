"""Comparisons that say how many elements differ and where: against a reference, and against torch's error."""

from __future__ import annotations

import torch


def _describe_mismatch(actual: torch.Tensor, expected: torch.Tensor, bad: torch.Tensor, name: str) -> str:
    diff = (actual.double() - expected.double()).abs()
    count = int(bad.sum())
    worst = int(torch.argmax(torch.where(bad, diff, torch.zeros_like(diff))))
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), actual.shape))
    return (
        f"{name}: {count} of {actual.numel()} elements differ (shape {tuple(actual.shape)}); worst at {index}: "
        f"actual {actual.reshape(-1)[worst].item()!r} vs expected {expected.reshape(-1)[worst].item()!r} "
        f"(|diff| {diff.reshape(-1)[worst].item():.3g}); max |diff| {diff.max().item():.3g}"
    )


def assert_close_verbose(
    actual: torch.Tensor, expected: torch.Tensor, *, atol: float, rtol: float, name: str = "tensor"
) -> None:
    """Assert ``|actual - expected| <= atol + rtol |expected|`` elementwise (NaN equal to NaN), explaining failures."""
    if actual.shape != expected.shape:
        raise AssertionError(f"{name}: shape {tuple(actual.shape)} != expected {tuple(expected.shape)}")
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    both_nan = torch.isnan(a) & torch.isnan(e)
    same_inf = torch.isinf(a) & (a == e)
    close = (a - e).abs() <= atol + rtol * e.abs()
    bad = ~(close | both_nan | same_inf)
    if bool(bad.any()):
        raise AssertionError(_describe_mismatch(a, e, bad, name))


def assert_no_worse_than_torch(
    ours: torch.Tensor, theirs: torch.Tensor, reference: torch.Tensor, *, atol: float, name: str = "tensor"
) -> None:
    """The three-way check: our error against the float64 reference is at most twice torch's, plus ``atol``."""
    ref = reference.detach().double().cpu()
    our_err = (ours.detach().double().cpu() - ref).abs()
    their_err = (theirs.detach().double().cpu() - ref).abs()
    bad = our_err > 2 * their_err + atol
    if bool(bad.any()):
        raise AssertionError(
            _describe_mismatch(ours.detach().double().cpu(), ref, bad, name)
            + f"; torch's max error {their_err.max().item():.3g}, ours {our_err.max().item():.3g}"
        )
