"""Python side of the CPU kernels: layout and dtype handling around the compiled float32 library.

``forward`` and ``backward`` have the registered ops' signatures (see :mod:`groupnorm.ops.op`). The kernels read
(N, C, *spatial) tensors in place when they are contiguous or channels-last (any rank 3..5 with C innermost), and
write outputs in the input's layout; other strides are made contiguous first. float16/bfloat16 tensors are read and
written in place too: the library converts them piecewise (a sample, a run of groups, a block) into float32 tiles
or buffers that stay in cache, computes in float32 and rounds once at the end (the same bits as converting whole
tensors around the float32 kernels, at a fraction of the memory traffic). Work buffers of up to 16 MiB are kept
for the next call (three of that size at most, per calling thread): a fresh multi-MiB buffer would cost its page
faults on every call.
"""

from __future__ import annotations

from pathlib import Path

import torch

from groupnorm import env
from groupnorm.activations import ACTIVATION_CODES  # the C enum ACT_* matches it
from groupnorm.ops.cpu import loader

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# the library's codes for the 2-byte types it reads and writes in place
HALF_DTYPE_CODES = {torch.float16: 1, torch.bfloat16: 2}

# Work goes in waves of this many input bytes so that the apply pass finds its data in cache (see the C source).
# Measured on a 2-core EPYC (32 MiB L3): see docs/results/bench-cpu/kernel-choice.md.
DEFAULT_WAVE_BYTES = env.CPU_WAVE_BYTES.default


# Below this many elements one thread beats two: the parallel region's start and barriers cost more than the
# work. The result does not depend on the thread count, so this is purely a speed choice.
PARALLEL_MIN_NUMEL = 1 << 15


def threads_for(numel: int) -> int:
    return 1 if numel < PARALLEL_MIN_NUMEL else torch.get_num_threads()


def _last_level_cache_bytes(default: int = 32 << 20) -> int:
    """Size of the largest CPU cache (Linux sysfs), or ``default`` where it cannot be read."""
    sizes = []
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip().upper()
        except OSError:
            continue
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        try:
            sizes.append(int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text))
        except (ValueError, IndexError):
            continue
    return max(sizes, default=default)


# Outputs of at least this many bytes (plain epilogue) are written with streaming stores; see the C source.
# Streaming stores send y to DRAM: a win only when x and y together cannot stay in the last-level cache anyway.
# Measured on the 2-core EPYC (32 MiB L3), interleaved A/B of the same call: 16 MiB outputs (x + y = 32 MiB)
# 1.43-1.58x faster with them; 12.8 MiB and 6.4 MiB outputs 27-33% slower (the next reader of y, and the next call's
# x, then miss in L3). See docs/results/bench-cpu/kernel-choice.md.
DEFAULT_STREAM_BYTES = _last_level_cache_bytes() // 2


def stream_bytes() -> int:
    chosen = env.CPU_STREAM_BYTES.get()
    return DEFAULT_STREAM_BYTES if chosen is None else chosen


def wave_bytes() -> int:
    return env.CPU_WAVE_BYTES.get()


def channels_last_like(x: torch.Tensor) -> bool:
    """True when x is dense with C innermost: (N, *spatial, C) contiguous, whatever the rank."""
    return x.dim() >= 3 and x.movedim(1, -1).is_contiguous()


def layout_code(x: torch.Tensor) -> int | None:
    """0 for (N, C, S) contiguous, 1 for (N, S, C), None for anything else."""
    if x.is_contiguous():
        return 0
    if channels_last_like(x):
        return 1
    return None


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _f32_vector(t: torch.Tensor | None) -> torch.Tensor | None:
    if t is None or (t.dtype == torch.float32 and t.is_contiguous()):
        return t  # the common case, without two conversion calls
    return t.to(torch.float32).contiguous()


def _like(t: torch.Tensor | None, ref: torch.Tensor) -> torch.Tensor | None:
    """t in ref's dtype with exactly ref's strides (ref is dense)."""
    if t is None:
        return None
    if t.dtype == ref.dtype and t.stride() == ref.stride():
        return t
    out = torch.empty_like(ref)
    out.copy_(t)
    return out


def _into(result: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """result in owner's dtype and layout (no copy when it already is)."""
    if result.dtype == owner.dtype and result.stride() == owner.stride():
        return result
    out = torch.empty_like(owner)
    out.copy_(result)
    return out


def _prepare(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """x as the library reads it (float32 or a 2-byte type it converts itself) and its layout code."""
    xf = x if x.dtype == torch.float32 or x.dtype in HALF_DTYPE_CODES else x.to(torch.float32)
    code = layout_code(xf)
    if code is None:
        xf = xf.contiguous()
        code = 0
    return xf, code


def _dims(x: torch.Tensor) -> tuple[int, int, int]:
    n, c = x.shape[0], x.shape[1]
    return n, c, x.numel() // (n * c)


def _check(rc: int, what: str) -> None:
    if rc == -1:
        raise MemoryError(f"groupnorm CPU {what}: out of memory for the kernel's work buffers")
    if rc != 0:
        raise RuntimeError(f"groupnorm CPU {what}: kernel rejected its arguments (code {rc})")


def forward(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    num_groups: int,
    eps: float,
    activation: str,
    residual: torch.Tensor | None,
    scale: torch.Tensor | None,
    shift: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The op's forward on CPU: ``(y, mean, rstd)``; y in x's dtype and layout, mean/rstd (N, G) float32."""
    lib = loader.library()
    assert lib is not None, "groupnorm CPU kernel called without its library (check supports())"
    xf, code = _prepare(x)
    n, c, s = _dims(xf)
    y = torch.empty_like(xf)
    mean = torch.empty((n, num_groups), dtype=torch.float32)
    rstd = torch.empty((n, num_groups), dtype=torch.float32)
    res = _like(residual, xf)
    w, b, sc, sh = (_f32_vector(t) for t in (weight, bias, scale, shift))
    pointers = (_ptr(xf), _ptr(y), _ptr(mean), _ptr(rstd), _ptr(w), _ptr(b), _ptr(sc), _ptr(sh), _ptr(res))
    sizes = (n, c, s, num_groups, float(eps), ACTIVATION_CODES[activation], code, threads_for(xf.numel()))
    half = HALF_DTYPE_CODES.get(xf.dtype)
    if half is None:
        rc = lib.gn_forward_f32(*pointers, *sizes, wave_bytes(), stream_bytes())
    else:
        rc = lib.gn_forward_half(*pointers, *sizes, wave_bytes(), half)
    _check(rc, "forward")
    return _into(y, x), mean, rstd


def backward(
    grad_y: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    num_groups: int,
    activation: str,
    residual: torch.Tensor | None,
    scale: torch.Tensor | None,
    shift: torch.Tensor | None,
    output_mask: list[bool],
) -> tuple[torch.Tensor, ...]:
    """The op's backward on CPU: ``(dx, dweight, dbias, dresidual, dscale, dshift)``, empty where not wanted."""
    lib = loader.library()
    assert lib is not None, "groupnorm CPU kernel called without its library (check supports())"
    want_dx, want_dw, want_db, want_dres, want_dscale, want_dshift = output_mask
    xf, code = _prepare(x)
    n, c, s = _dims(xf)
    dy = _like(grad_y, xf)
    res = _like(residual, xf)
    w, b, sc, sh = (_f32_vector(t) for t in (weight, bias, scale, shift))
    mean32, rstd32 = _f32_vector(mean), _f32_vector(rstd)

    def out(wanted: bool, owner: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
        return torch.empty_like(like) if wanted and owner is not None else None

    dx = out(want_dx, x, xf)
    dres = out(want_dres, residual, xf)
    dw = out(want_dw, weight, w) if w is not None else None
    db = out(want_db, bias, b) if b is not None else None
    dsc = out(want_dscale, scale, sc) if sc is not None else None
    dsh = out(want_dshift, shift, sh) if sh is not None else None
    pointers = (
        _ptr(dy), _ptr(xf), _ptr(mean32), _ptr(rstd32), _ptr(w), _ptr(b), _ptr(sc), _ptr(sh), _ptr(res),
        _ptr(dx), _ptr(dw), _ptr(db), _ptr(dres), _ptr(dsc), _ptr(dsh),
    )  # fmt: skip
    sizes = (n, c, s, num_groups, ACTIVATION_CODES[activation], code, threads_for(xf.numel()), wave_bytes())
    half = HALF_DTYPE_CODES.get(xf.dtype)
    if half is None:
        rc = lib.gn_backward_f32(*pointers, *sizes, stream_bytes())
    else:
        rc = lib.gn_backward_half(*pointers, *sizes, half)
    _check(rc, "backward")
    owners = (x, weight, bias, residual, scale, shift)
    results = (dx, dw, db, dres, dsc, dsh)
    # a fresh empty tensor each: a custom op's outputs may not alias one another
    return tuple(x.new_empty(0) if r is None else _into(r, o) for r, o in zip(results, owners))
