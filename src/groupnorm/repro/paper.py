"""The paper's numbers (Wu & He 2018, ImageNet ResNet-50, top-1 validation error in %), for side-by-side reports."""

from __future__ import annotations

# Figure 1 / Table 2: error by images per GPU (8 GPUs, BN statistics per GPU).
BY_BATCH: dict[str, dict[int, float]] = {
    "bn": {32: 23.6, 16: 23.7, 8: 24.8, 4: 27.3, 2: 34.7},
    "gn": {32: 24.1, 16: 24.2, 8: 24.0, 4: 24.2, 2: 24.1},
    # Table 1: 32 images per GPU.
    "ln": {32: 25.3},
    "in": {32: 28.4},
}
# Table 3 (32 images per GPU): a fixed number of groups, and a fixed number of channels per group.
BY_GROUPS: dict[int, float] = {64: 24.6, 32: 24.1, 16: 24.6, 8: 24.4, 4: 24.6, 2: 24.7, 1: 25.3}
BY_GROUP_SIZE: dict[int, float] = {64: 24.4, 32: 24.5, 16: 24.2, 8: 24.3, 4: 24.8, 2: 25.6, 1: 28.4}
SETTING = "ImageNet, ResNet-50, 8 GPUs, 100 epochs"


def paper_error(norm: str, batch_per_device: int) -> float | None:
    """The paper's error for a norm (bn, gn, ln, in; syncbn has none) at a batch per device, if it has one."""
    return BY_BATCH.get(norm, {}).get(batch_per_device)
