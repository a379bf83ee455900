"""What machine a number was measured on: CPU model, cores, last-level cache, the instruction sets the CPU has and
the one the loaded CPU kernel library was built for.

Every benchmark and experiment record takes these fields from :func:`describe`, so a committed figure always says
where it came from (CPU speed differs by vendor, cache and instruction set; a ``-march=native`` build on one machine
is not the build on another).

Example::

    >>> from groupnorm import machine
    >>> info = machine.describe()
    >>> sorted(k for k in info if k.startswith("cpu"))
    ['cpu', 'cpu_count', 'cpu_isa', 'cpu_l3']
    >>> machine.can_run("native"), info["cpu_isa"] == machine.isa_level()
    (True, True)
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# The x86-64 micro-architecture levels by the CPU flags (as /proc/cpuinfo spells them) each adds to the one below
# (psABI; only the flags that tell the levels apart in practice).
X86_64_V3_FLAGS = frozenset({"avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "movbe"})
X86_64_V4_FLAGS = frozenset({"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"})

# the fields of describe(), in the order result pages list them
FIELDS = ("cpu", "cpu_count", "cpu_l3", "cpu_isa", "kernel_build")

# the vector width a kernel build reports (gn_vector_bits) -> the instruction set its loops use
VECTOR_ISA = {512: "AVX-512", 256: "AVX2", 128: "SSE2"}


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return set()


def isa_level(flags: set[str] | None = None) -> str:
    """The highest x86-64 level (``x86-64``, ``x86-64-v3``, ``x86-64-v4``) whose instructions the CPU runs; the
    machine name (e.g. ``aarch64``) elsewhere."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return platform.machine()
    flags = cpu_flags() if flags is None else flags
    if X86_64_V3_FLAGS <= flags:
        return "x86-64-v4" if X86_64_V4_FLAGS <= flags else "x86-64-v3"
    return "x86-64"


def can_run(target: str, flags: set[str] | None = None) -> bool:
    """Whether this CPU runs code built with ``-march=target`` (``native`` always; the x86-64 levels by flags)."""
    if target == "native":
        return True
    levels = ["x86-64", "x86-64-v3", "x86-64-v4"]
    if target not in levels:
        raise ValueError(f"target: expected native or one of {', '.join(levels)}, got {target!r}")
    have = isa_level(flags)
    return have in levels and levels.index(have) >= levels.index(target)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def l3_cache() -> str | None:
    """The last-level cache's size as the kernel reports it (e.g. ``32768K``), or None where unknown."""
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    sizes = {}
    for index in base.glob("index*"):
        try:
            sizes[int((index / "level").read_text())] = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
    return sizes[max(sizes)] if sizes else None


def kernel_build() -> str:
    """The loaded CPU kernel library's target and vector instruction set, e.g. ``native (AVX-512)``, or why there
    is none."""
    from groupnorm.ops.cpu import build, loader

    lib = loader.library()
    if lib is None:
        return f"none ({loader.error()})"
    bits = lib.gn_vector_bits()
    return f"{build.target()} ({VECTOR_ISA.get(bits, f'{bits}-bit vectors')})"


def describe(kernels: bool = True) -> dict:
    """Machine fields for a result record: ``cpu`` (model), ``cpu_count``, ``cpu_l3``, ``cpu_isa`` and, with
    ``kernels``, ``kernel_build`` (loads, and on first use builds, the CPU kernel library)."""
    info = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_l3": l3_cache(),
        "cpu_isa": isa_level(),
    }
    if kernels:
        info["kernel_build"] = kernel_build()
    return info


def one_line(info: dict) -> str:
    """A result's machine in one line, from its record (fields missing in older records are left out).

    >>> one_line({"cpu": "AMD EPYC 9B14", "cpu_count": 2, "cpu_l3": "32768K", "cpu_isa": "x86-64-v4",
    ...           "kernel_build": "native (AVX-512)", "torch": "2.14.1", "device": "cpu"})
    'AMD EPYC 9B14, 2 cores, L3 32768K, x86-64-v4, kernels native (AVX-512), torch 2.14.1 on cpu'
    """
    parts = [
        info.get("cpu") or info.get("processor"),
        f"{info['cpu_count']} cores" if info.get("cpu_count") else None,
        f"L3 {info['cpu_l3']}" if info.get("cpu_l3") else None,
        info.get("cpu_isa"),
        f"kernels {info['kernel_build']}" if info.get("kernel_build") else None,
        f"torch {info['torch']} on {info.get('device', '?')}" if info.get("torch") else None,
    ]
    return ", ".join(p for p in parts if p)
