"""The named input shapes every implementation must pass, the layouts, and seeded inputs in them."""

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
    # 9216 elements per group: more than one block or tile of the kernels' loops, with a short last one
    NamedShape((1, 8, 48, 48), 2, "group spans blocks"),
]

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
