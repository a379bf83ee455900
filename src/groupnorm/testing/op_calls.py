"""A hypothesis strategy of random op calls, for property tests of any implementation."""

from __future__ import annotations

import torch

from groupnorm.testing.shapes import with_layout


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
