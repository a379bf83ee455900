"""Keep freed memory mapped for the length of a benchmark run, so that page faults do not decide the ratios.

With glibc's default settings a freed block of several MiB is returned to the operating system (by munmap, or by
trimming the top of the heap), and the next allocation of that size touches fresh pages: each 4 KiB page then costs
a fault and a zeroing, which on the 2-core benchmark machine added up to 1 ms to a 6 MB forward+backward. Whether a
given call pays depends on the order of earlier allocations and frees, not on the kernel, so one provider or the
other was charged at random. ``keep_freed_memory`` raises glibc's trim and mmap thresholds to 1 GiB for the process
(``mallopt``), as a long-running training process reaches on its own once its sizes repeat. Both providers run under
the same setting, and the run's records name it in their ``malloc`` field.

Example::

    >>> from groupnorm.bench import allocator
    >>> allocator.keep_freed_memory() in ("glibc: trim and mmap thresholds 1 GiB", "default (not glibc)")
    True
"""

from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
THRESHOLD_BYTES = 1 << 30
KEPT = "glibc: trim and mmap thresholds 1 GiB"


def keep_freed_memory() -> str:
    """Set glibc's thresholds (see the module docstring); returns what the process now runs with."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "default (not glibc)"
    libc = ctypes.CDLL(None)
    ok = (
        libc.mallopt(M_TRIM_THRESHOLD, THRESHOLD_BYTES) == 1
        and libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES) == 1
    )
    return KEPT if ok else "default (mallopt refused)"
