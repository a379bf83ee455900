"""Load the compiled CPU kernel library, building it on first use; ``None`` (with one warning) when impossible.

Nothing here runs at import time: the library is looked for, and built if missing, the first time a CPU call asks
for it. A missing compiler, a failed build or ``GROUPNORM_CPU_KERNEL=0`` leaves the plain-torch implementation in
charge, so a GPU host or a machine without a C compiler still works.
"""

from __future__ import annotations

import ctypes
import re
import sys
import threading
import time
import warnings
from pathlib import Path

from groupnorm import env

# The library's ABI number, read from the one place it is written, the C header (GN_ABI_VERSION): a loaded
# library whose gn_abi_version() reports another number was built from other sources and is refused.
ABI_VERSION = int(
    re.search(
        r"#define GN_ABI_VERSION (\d+)", (Path(__file__).parent / "csrc" / "groupnorm_cpu.h").read_text()
    ).group(1)
)

_lock = threading.Lock()
_state: dict[str, object] = {}

_i64, _f32, _int, _ptr = ctypes.c_int64, ctypes.c_float, ctypes.c_int, ctypes.c_void_p


def _declare(lib: ctypes.CDLL) -> None:
    """Declare every entry point of ``groupnorm_cpu.h`` (tests/cpu/test_abi.py checks these lists against it)."""
    lib.gn_abi_version.restype = _int
    lib.gn_abi_version.argtypes = []
    lib.gn_vector_bits.restype = _int
    lib.gn_vector_bits.argtypes = []
    lib.gn_backward_f32_partial.restype = _int
    lib.gn_backward_f32_partial.argtypes = [_ptr] * 13 + [_i64] * 4 + [_int, _int, _int, _i64, _ptr, _ptr]
    lib.gn_param_grad_sums.restype = None
    lib.gn_param_grad_sums.argtypes = [_ptr, _ptr, _i64, _i64, _ptr, _ptr, _int]
    lib.gn_forward_f32.restype = _int
    lib.gn_forward_f32.argtypes = [_ptr] * 9 + [_i64] * 4 + [_f32, _int, _int, _int, _i64, _i64]
    lib.gn_backward_f32.restype = _int
    lib.gn_backward_f32.argtypes = [_ptr] * 15 + [_i64] * 4 + [_int, _int, _int, _i64, _i64]
    lib.gn_forward_half.restype = _int
    lib.gn_forward_half.argtypes = [_ptr] * 9 + [_i64] * 4 + [_f32, _int, _int, _int, _i64, _int]
    lib.gn_backward_half.restype = _int
    lib.gn_backward_half.argtypes = [_ptr] * 15 + [_i64] * 4 + [_int, _int, _int, _i64, _int]


def disabled() -> bool:
    """True when ``GROUPNORM_CPU_KERNEL`` is set to 0/false/off/no."""
    return not env.CPU_KERNEL.get()


def _load() -> ctypes.CDLL:
    from groupnorm.ops.cpu import build  # here, so `python -m groupnorm.ops.cpu.build` runs a fresh module

    path = build.find_library()
    if path is None:  # the first CPU call on this machine compiles the kernels: say so, it takes seconds
        start = time.perf_counter()
        path = build.build()
        print(
            f"groupnorm: compiled the CPU kernels for {build.target()} in {time.perf_counter() - start:.1f} s, "
            f"cached at {path} (built once per machine kind; `python -m groupnorm.ops.cpu.build` builds ahead, "
            f"{env.CPU_KERNEL.name}=0 uses plain torch instead)",
            file=sys.stderr,
            flush=True,
        )
    lib = ctypes.CDLL(str(path))
    _declare(lib)
    if lib.gn_abi_version() != ABI_VERSION:
        raise OSError(f"{path} has ABI {lib.gn_abi_version()}, expected {ABI_VERSION}")
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded library, or None when it cannot be had (warns once, with the reason)."""
    if "lib" in _state:
        return _state["lib"]  # type: ignore[return-value]
    with _lock:
        if "lib" not in _state:
            lib = None
            if not disabled():
                try:
                    lib = _load()
                except (RuntimeError, OSError) as e:  # BuildError is a RuntimeError
                    _state["error"] = str(e)
                    warnings.warn(
                        f"groupnorm: CPU kernel unavailable, using plain torch ops on CPU ({e})",
                        RuntimeWarning,
                        stacklevel=3,
                    )
            else:
                _state["error"] = "disabled by GROUPNORM_CPU_KERNEL"
            _state["lib"] = lib
    return _state["lib"]  # type: ignore[return-value]


def available() -> bool:
    """Whether the compiled kernels serve CPU calls (builds the library on the first call)."""
    return library() is not None


def error() -> str | None:
    """Why the library is unavailable, once :func:`library` has been asked."""
    return _state.get("error")  # type: ignore[return-value]


def reset() -> None:
    """Forget the loaded library so the next call looks again (tests switch the environment)."""
    with _lock:
        _state.clear()
