"""Models made fit for comparing two forms of the same network."""

from __future__ import annotations

import torch
from torch import nn


def randomize_norm_affine(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` with every GroupNorm's weight drawn around 1 and bias around 0 (seeded), returned for chaining.

    Libraries zero-initialize the last norm of a residual block, which hides that norm's output; with random
    affine parameters a norm that applies its activation twice, or drops it, shows in the output.

    >>> norm = randomize_norm_affine(nn.Sequential(nn.GroupNorm(2, 4)))[0]
    >>> bool((norm.bias != 0).all())
    True
    """
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.GroupNorm):
                m.weight.copy_(torch.randn_like(m.weight) * 0.5 + 1)
                m.bias.copy_(torch.randn_like(m.bias) * 0.5)
    return model
