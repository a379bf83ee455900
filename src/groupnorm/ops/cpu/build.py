"""Compile the CPU kernel library (``csrc/groupnorm_cpu.c``, which includes the other ``csrc`` files) into a cache
directory.

The library is built for the machine it runs on (``-march=native``) unless ``GROUPNORM_CPU_MARCH`` names another
target: ``x86-64-v3`` for AVX2, ``x86-64`` for SSE2 only (the portable paths, which the tests marked ``portable``
build and check). The file name carries the target and a hash of the source, the flags and, for ``native``, the
CPU's feature flags; a cache shared by different machines keeps one library per kind. Builds are safe to run
concurrently: each compiles to a private temporary file and moves it into place with ``os.replace``, so a reader
only ever sees a complete library.

Run ``python -m groupnorm.ops.cpu.build`` to build ahead of time (``make install`` does); otherwise the first CPU
call builds it (about 10 s with gcc). Environment:

- ``GROUPNORM_CPU_CC``: the C compiler (default ``cc``, or ``$CC``);
- ``GROUPNORM_CPU_MARCH``: the ``-march`` target (default ``native``);
- ``GROUPNORM_CACHE_DIR``: the only directory to look in and build into. Without it: ``_build/`` beside this
  file, then (read-only installs) ``$XDG_CACHE_HOME/groupnorm`` or ``~/.cache/groupnorm``.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from groupnorm import env

CSRC = Path(__file__).parent / "csrc"
# one translation unit: groupnorm_cpu.c includes every part, so gcc inlines across them (see its header)
SOURCES = [CSRC / "groupnorm_cpu.c"]
HEADERS = sorted(CSRC.glob("*.h"))

# -ffast-math is deliberately absent: at link time it adds crtfastmath.o, which turns on flush-to-zero and
# denormals-are-zero for the whole Python process. Only flags that change no IEEE result are used.
# -ffp-contract=off: the compiler may not fuse a * b + c into one FMA on its own. gcc otherwise decides that per
# compiled copy of a loop (vectorized or not, inlined where, for which target), so two copies of one formula (the
# backward with and without dx, a split and a fused path) could round differently; with it, every result is the
# source's IEEE operations in the source's order, the same in every copy and for every -march. FMAs that are part
# of a formula are written as intrinsics (simd_avx512.h and the AVX-512 loops) and stay FMAs.
# The target, -march=<GROUPNORM_CPU_MARCH>, comes in front of these (see cflags).
CFLAGS = [
    "-O3", "-fopenmp", "-fPIC", "-std=gnu11", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off",
]  # fmt: skip
LDFLAGS = ["-shared", "-lm"]


class BuildError(RuntimeError):
    """The compiler is missing or failed; the message holds its output."""


def compiler() -> str:
    return env.CPU_CC.get()


def target() -> str:
    """The ``-march`` target of the library this process builds and loads (``GROUPNORM_CPU_MARCH``)."""
    return env.CPU_MARCH.get()


def cflags(march: str | None = None) -> list[str]:
    """The compiler flags for ``march`` (default: :func:`target`)."""
    return [f"-march={march or target()}", *CFLAGS]


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return line
    except OSError:
        pass
    return platform.processor()


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:12]


def _env_tag(march: str) -> str:
    """Machine kind: architecture, target, and a hash of the compiler, the flags and, for a native build, the
    CPU's feature flags (a named target's library serves every machine that has that target)."""
    cpu = _cpu_flags() if march == "native" else ""
    tag = _digest(compiler().encode(), " ".join(cflags(march) + LDFLAGS).encode(), cpu.encode())
    return f"{platform.machine()}-{march}-{tag}"


def library_name(march: str | None = None) -> str:
    """File name of the library for this machine kind, this target (default: :func:`target`) and this source."""
    march = march or target()
    return f"groupnorm_cpu-{_env_tag(march)}-{_digest(*(p.read_bytes() for p in SOURCES + HEADERS))}.so"


def _remove_stale(directory: Path, keep: str, march: str) -> None:
    """Delete libraries of older sources built for this machine kind and target (other builds stay)."""
    prefix = f"groupnorm_cpu-{_env_tag(march)}-"
    for old in directory.glob(prefix + "*.so"):
        if old.name != keep:
            try:
                old.unlink()  # a process that loaded it keeps its mapping
            except OSError:
                pass


def cache_dirs() -> list[Path]:
    """Candidate directories, in the order they are tried: beside the package, then the user's cache."""
    chosen = env.CACHE_DIR.get()
    if chosen:  # an explicit choice is the only place looked at
        return [Path(chosen)]
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return [Path(__file__).parent / "_build", Path(xdg) / "groupnorm"]


def find_library(march: str | None = None) -> Path | None:
    """An already-built library for this machine and target, if any cache directory has one."""
    name = library_name(march)
    for d in cache_dirs():
        candidate = d / name
        if candidate.is_file():
            return candidate
    return None


def _writable_dir() -> Path:
    errors = []
    for d in cache_dirs():
        try:
            d.mkdir(parents=True, exist_ok=True)
            if os.access(d, os.W_OK):
                return d
            errors.append(f"{d}: not writable")
        except OSError as e:
            errors.append(f"{d}: {e}")
    raise BuildError("no writable cache directory for the CPU kernel: " + "; ".join(errors))


def _require_compiler() -> str:
    cc = compiler()
    if shutil.which(cc) is None:
        raise BuildError(f"C compiler {cc!r} not found (set GROUPNORM_CPU_CC or CC)")
    return cc


def compile_library(sources: list[Path], output: Path, march: str | None = None) -> None:
    """Compile ``sources`` into the shared library ``output`` with this module's flags for ``march`` (default:
    :func:`target`).

    :func:`build` calls it on :data:`SOURCES`; ``scripts/cpu_kernel_ab.py`` on another revision's sources, the
    portable-build tests for named targets. Raises :class:`BuildError` with the compiler's output when it fails.
    """
    cmd = [_require_compiler(), *cflags(march), *(str(p) for p in sources), "-o", str(output), *LDFLAGS]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr.strip()}")


def build(force: bool = False, march: str | None = None) -> Path:
    """Compile the library for ``march`` (default: :func:`target`) unless one exists; return its path. Raises
    :class:`BuildError` on failure."""
    march = march or target()
    if not force:
        found = find_library(march)
        if found is not None:
            return found
    _require_compiler()
    out_dir = _writable_dir()
    library = out_dir / library_name(march)
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=out_dir)
    os.close(fd)
    try:
        compile_library(SOURCES, Path(tmp), march)
        os.chmod(tmp, 0o755)
        os.replace(tmp, library)
        _remove_stale(out_dir, library.name, march)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return library


def main() -> int:
    try:
        path = build(force="--force" in sys.argv[1:])
    except BuildError as e:
        print(f"groupnorm: CPU kernel not built: {e}", file=sys.stderr)
        print("groupnorm: the plain-torch implementation will serve CPU calls", file=sys.stderr)
        return 0 if "--strict" not in sys.argv[1:] else 1
    print(f"groupnorm: CPU kernel library at {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
