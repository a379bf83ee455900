"""Test helpers shared by the project's tests and by anyone testing a GroupNorm implementation.

- :data:`NAMED_SHAPES`: the edge cases every implementation must pass, each with the reason it is there.
- :data:`TOLERANCES`: absolute/relative tolerance per dtype for outputs normalized to unit scale.
- :func:`assert_close_verbose`: like ``torch.testing.assert_close`` but says how many elements differ and where.
- :func:`assert_no_worse_than_torch`: the three-way check |ours - ref64| <= 2 |torch - ref64| + atol.

Example::

    >>> from groupnorm.testing import NAMED_SHAPES, assert_close_verbose
    >>> NAMED_SHAPES[0].shape
    (2, 8)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class NamedShape:
    """An input shape, its group count, and why it is in the list."""

    shape: tuple[int, ...]
    num_groups: int
    why: str

    def __str__(self) -> str:
        return f"{'x'.join(map(str, self.shape))}-G{self.num_groups}-{self.why.replace(' ', '_')}"


NAMED_SHAPES: list[NamedShape] = [
    NamedShape((2, 8), 4, "rank 2"),
    NamedShape((3, 12, 17), 3, "rank 3 sequence"),
    NamedShape((2, 64, 7, 9), 32, "odd spatial"),
    NamedShape((1, 32, 8, 8), 8, "batch 1"),
    NamedShape((2, 16, 5, 5), 1, "G 1 layer norm"),
    NamedShape((2, 16, 5, 5), 16, "G C instance norm"),
    NamedShape((1, 32, 1, 1), 32, "one pixel one channel per group"),
    NamedShape((3, 32, 1, 1), 8, "one pixel"),
    NamedShape((2, 8, 3, 4, 5), 4, "rank 5 video"),
]

# (atol, rtol) for values of order one, by dtype: fp16/bf16 are bounded by their rounding of y itself.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (2e-5, 1e-5),
    torch.float16: (4e-3, 4e-3),
    torch.bfloat16: (3e-2, 2e-2),
}


LAYOUTS: tuple[str, ...] = ("contiguous", "channels_last")


def make_input(
    shape: tuple[int, ...],
    dtype: torch.dtype = torch.float32,
    layout: str = "contiguous",
    *,
    seed: int = 0,
    scale: float = 1.0,
    offset: float = 0.0,
) -> torch.Tensor:
    """A seeded normal input ``offset + scale * N(0, 1)``; ``layout="channels_last"`` means channels_last_3d at
    rank 5 and is ignored for ranks without a channels-last format."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got layout={layout!r}")
    gen = torch.Generator().manual_seed(seed)
    return with_layout(
        (torch.randn(shape, generator=gen, dtype=torch.float64) * scale + offset).to(dtype), layout
    )


def with_layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    """``x`` in ``layout``: "channels_last" is channels_last at rank 4, channels_last_3d at rank 5, and leaves
    other ranks as they are."""
    if layout == "channels_last" and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "channels_last" and x.dim() == 5:
        return x.contiguous(memory_format=torch.channels_last_3d)
    return x


def shape_layout_cases() -> list[tuple[NamedShape, str]]:
    """(named shape, layout) pairs; channels_last only at rank 4 and 5, where torch defines it."""
    return [
        (named, layout)
        for named in NAMED_SHAPES
        for layout in LAYOUTS
        if layout == "contiguous" or len(named.shape) in (4, 5)
    ]


def torch_group_norm_accepts(shape: tuple[int, ...]) -> bool:
    """torch's ``group_norm`` refuses inputs where N times the spatial size is 1 (a check shared with batch norm);
    ours normalizes such groups to zero."""
    spatial = 1
    for s in shape[2:]:
        spatial *= s
    return shape[0] * spatial != 1


def rounding_floor(mean: torch.Tensor, rstd: torch.Tensor) -> float:
    """The error of x_hat that float32 statistics cannot avoid: mean held in float32 is off by up to half an ulp
    of |mean|, which x_hat = (x - mean) * rstd scales by rstd. Negligible until |mean| / std is in the thousands.
    """
    if mean.numel() == 0 or mean.dtype == torch.float64:
        return 0.0
    return float((mean.abs().float() * rstd.float()).max()) * 2.0**-24


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


def call_reference(call: dict) -> torch.Tensor:
    """:func:`group_norm_ref` of a call drawn by :func:`op_calls` (a dict of the op's arguments by name)."""
    from groupnorm.reference import group_norm_ref

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


def op_calls(dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float64, torch.bfloat16, torch.float16)):
    """A hypothesis strategy of random op calls: dicts of the op's arguments by name.

    Shapes of rank 2-5 with sizes including 1 and an empty batch; 1-6 groups of 1-5 channels; layouts
    contiguous, channels_last and strided views; weights in the input or the accumulation dtype; every
    activation, residual, scale and shift present or not; several eps and input offsets. Needs ``hypothesis``.

    Example::

        from hypothesis import given
        @given(call=op_calls())
        def test_mine(call):
            y = my_forward(**call)
            assert_close_verbose(y, call_reference(call), atol=..., rtol=...)
    """
    from hypothesis import strategies as st

    from groupnorm.activations import ACTIVATIONS

    @st.composite
    def calls(draw):
        rank = draw(st.integers(2, 5))
        groups = draw(st.integers(1, 6))
        channels = groups * draw(st.integers(1, 5))
        n = draw(st.sampled_from([0, 1, 1, 2, 3]))
        spatial = tuple(draw(st.lists(st.integers(1, 6), min_size=rank - 2, max_size=rank - 2)))
        shape = (n, channels, *spatial)
        dtype = draw(st.sampled_from(dtypes))
        layout = draw(st.sampled_from(["contiguous", "channels_last", "strided"]))
        gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
        offset = draw(st.sampled_from([0.0, 3.0, -50.0]))
        if layout == "strided":  # every other element of the last dimension: a view with no dense layout
            big = torch.randn((*shape[:-1], 2 * shape[-1]), generator=gen, dtype=torch.float64)
            x = (big + offset).to(dtype)[..., ::2]
        else:
            x = with_layout(
                (torch.randn(shape, generator=gen, dtype=torch.float64) + offset).to(dtype), layout
            )
        param_dtype = draw(
            st.sampled_from([dtype, torch.float64 if dtype == torch.float64 else torch.float32])
        )

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

    return calls()
