"""Benchmark provider ``liger``: Liger-Kernel's Triton GroupNorm (``pip install liger-kernel``), CUDA only.

Liger's kernel takes weight and bias and normalizes; the epilogue (residual, activation) runs as separate torch
ops, as a model using it would. It makes inputs contiguous (a channels_last input is copied first) and
accumulates dweight/dbias with atomics; the timing includes all of that, since it is what a user pays.

Imported by :mod:`groupnorm.bench.providers` when present; without liger-kernel (or Triton) installed the import
fails and the provider is simply not offered.
"""

from __future__ import annotations

from liger_kernel.ops.group_norm import LigerGroupNormFunction

from groupnorm.bench.providers import _TORCH_ACT, Inputs, _autograd_runner, register_provider

EPS = 1e-5  # the value the other providers use (torch's default; Liger's module defaults to 1e-6)


def _setup_liger(inp: Inputs, mode: str):
    if inp.x.device.type != "cuda":
        raise ValueError(f"liger runs on CUDA only, got a tensor on {inp.x.device}")
    if inp.x.dim() < 3:
        raise ValueError(f"liger needs inputs of rank >= 3, got shape {tuple(inp.x.shape)}")
    channels = inp.x.shape[1]

    def fn(x, w, b, r):
        out = LigerGroupNormFunction.apply(x, w, b, channels, inp.groups, EPS)
        if r is not None:
            out = out + r
        return _TORCH_ACT[inp.activation](out)

    return _autograd_runner(inp, mode, fn)


register_provider(
    "liger",
    _setup_liger,
    description="Liger-Kernel's Triton GroupNorm (contiguous copy, atomic dweight/dbias), epilogue as torch ops",
    default=False,
)
