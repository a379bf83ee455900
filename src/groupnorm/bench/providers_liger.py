"""Benchmark provider ``liger``: Liger-Kernel's Triton GroupNorm (``pip install liger-kernel``), CUDA only.

Liger's kernel takes weight and bias and normalizes; the epilogue (residual, activation) runs as separate torch
ops, as a model using it would. It makes inputs contiguous (a channels_last input is copied first) and
accumulates dweight/dbias with atomics; the timing includes all of that, since it is what a user pays.

Imported by :mod:`groupnorm.bench.providers` on first use of the registry; without liger-kernel (or Triton)
installed the import fails, the provider is not offered, and ``groupnorm bench`` prints why.
"""

from __future__ import annotations

import torch
from liger_kernel.ops.group_norm import LigerGroupNormFunction

from groupnorm.activations import apply_activation
from groupnorm.bench.providers import Inputs, autograd_runner, register_provider

EPS = 1e-5  # the value the other providers use (torch's default; Liger's module defaults to 1e-6)


def liger_eager(x, weight, bias, residual, *, groups: int, activation: str) -> torch.Tensor:
    """Liger's GroupNorm, then the epilogue as torch ops (the counterpart of ``providers.torch_eager``)."""
    out = LigerGroupNormFunction.apply(x, weight, bias, x.shape[1], groups, EPS)
    if residual is not None:
        out = out + residual
    return apply_activation(out, activation)


def _setup_liger(inp: Inputs, mode: str):
    if inp.x.device.type != "cuda":
        raise ValueError(f"liger runs on CUDA only, got a tensor on {inp.x.device}")
    if inp.x.dim() < 3:
        raise ValueError(f"liger needs inputs of rank >= 3, got shape {tuple(inp.x.shape)}")

    def fn(x, w, b, r):
        return liger_eager(x, w, b, r, groups=inp.groups, activation=inp.activation)

    return autograd_runner(inp, mode, fn)


register_provider(
    "liger",
    _setup_liger,
    description="Liger-Kernel's Triton GroupNorm (contiguous copy, atomic dweight/dbias), epilogue as torch ops",
    default=False,
)
