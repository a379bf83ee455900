"""Device functions shared by the kernels: per-channel epilogue coefficients, activations and their derivatives.

All arithmetic is float32.

``ACT`` is a compile-time code from :data:`ACTIVATION_CODES`, so each kernel specialization carries only the
branch it uses. tanh is written through exp (``tanh(u) = 1 - 2 / (exp(2u) + 1)``, exact at both infinities)
because no tanh is common to the Triton releases we support.
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

# the codes of the one activation table; activate/activate_grad branch on them (the launchers pass them as ACT)
from groupnorm.activations import ACTIVATION_CODES as ACTIVATION_CODES

# jit functions may only read globals that are constexpr. Keep them on the right of a tensor operand: under the
# interpreter, ``constexpr * tensor`` wraps the tensor in a constexpr and breaks later arithmetic.
_INV_SQRT_2 = tl.constexpr(0.7071067811865476)
_INV_SQRT_2PI = tl.constexpr(0.3989422804014327)
_SQRT_2_OVER_PI = tl.constexpr(0.7978845608028654)
_GELU_TANH_COEF = tl.constexpr(0.044715)

# Triton's interpreter converts float32 to bfloat16 by truncation; the GPU rounds to nearest even. Under the
# interpreter, round explicitly so that both give the same bits.
_ROUND_BF16_BY_HAND = tl.constexpr(os.environ.get("TRITON_INTERPRET", "0") == "1")


@triton.jit
def to_dtype(v, DTYPE: tl.constexpr):
    """``v`` (float32) converted to ``DTYPE`` with round-to-nearest-even."""
    if _ROUND_BF16_BY_HAND and DTYPE == tl.bfloat16:
        bits = v.to(tl.uint32, bitcast=True)
        bits = bits + 0x7FFF + ((bits >> 16) & 1)
        out = (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        out = v.to(DTYPE)
    return out


@triton.jit
def channel_coefficients(
    W,
    B,
    SCALE,
    SHIFT,
    n,
    ch,
    cmask,
    C,
    HAS_W: tl.constexpr,
    HAS_B: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    HAS_SHIFT: tl.constexpr,
):
    """Per-channel ``(weight, gain, offset)`` with ``pre = x_hat * gain + offset`` for sample ``n``.

    ``gain = weight * (1 + scale)`` and ``offset = bias * (1 + scale) + shift``: the epilogue's affine part folded
    so that each element costs one multiply-add. weight/bias are contiguous (C,), scale/shift contiguous (N, C).
    """
    w = tl.full(ch.shape, 1.0, tl.float32)
    b = tl.zeros(ch.shape, tl.float32)
    if HAS_W:
        w = tl.load(W + ch, mask=cmask, other=1.0).to(tl.float32)
    if HAS_B:
        b = tl.load(B + ch, mask=cmask, other=0.0).to(tl.float32)
    gain = w
    offset = b
    if HAS_SCALE:
        factor = 1.0 + tl.load(SCALE + n * C + ch, mask=cmask, other=0.0).to(tl.float32)
        gain = gain * factor
        offset = offset * factor
    if HAS_SHIFT:
        offset = offset + tl.load(SHIFT + n * C + ch, mask=cmask, other=0.0).to(tl.float32)
    return w, gain, offset


@triton.jit
def _tanh(u):
    return 1.0 - 2.0 / (tl.exp(2.0 * u) + 1.0)


@triton.jit
def activate(p, ACT: tl.constexpr):
    if ACT == 1:
        p = tl.maximum(p, 0.0)
    elif ACT == 2:
        p = p * tl.sigmoid(p)
    elif ACT == 3:
        p = 0.5 * p * (1.0 + tl.erf(p * _INV_SQRT_2))
    elif ACT == 4:
        p = 0.5 * p * (1.0 + _tanh((p + p * p * p * _GELU_TANH_COEF) * _SQRT_2_OVER_PI))
    return p


@triton.jit
def activate_grad(p, ACT: tl.constexpr):
    """d act(p) / dp; only called with ACT != 0."""
    if ACT == 1:
        d = tl.where(p > 0.0, 1.0, 0.0)
    elif ACT == 2:
        s = tl.sigmoid(p)
        d = s * (1.0 + p * (1.0 - s))
    elif ACT == 3:
        d = 0.5 * (1.0 + tl.erf(p * _INV_SQRT_2)) + p * tl.exp(-0.5 * p * p) * _INV_SQRT_2PI
    else:
        t = _tanh((p + p * p * p * _GELU_TANH_COEF) * _SQRT_2_OVER_PI)
        d_inner = (p * p * (3.0 * _GELU_TANH_COEF) + 1.0) * _SQRT_2_OVER_PI
        d = 0.5 * (1.0 + t) + 0.5 * p * (1.0 - t * t) * d_inner
    return d
