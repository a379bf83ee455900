"""Compile the CPU kernel library (``csrc/groupnorm_cpu.c``, which includes the other ``csrc`` files) into a cache
directory.

The library is built for the machine it runs on (``-march=native``), so the file name carries a hash of the
source, the flags and the CPU's feature flags; a cache shared by different machines keeps one library per kind.
Builds are safe to run concurrently: each compiles to a private temporary file and moves it into place with
``os.replace``, so a reader only ever sees a complete library.

Run ``python -m groupnorm.ops.cpu.build`` to build ahead of time (``make install`` does); otherwise the first CPU
call builds it (about 10 s with gcc). Environment:

- ``GROUPNORM_CPU_CC``: the C compiler (default ``cc``, or ``$CC``);
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
CFLAGS = ["-O3", "-march=native", "-fopenmp", "-fPIC", "-std=gnu11", "-fno-math-errno", "-fno-trapping-math"]
LDFLAGS = ["-shared", "-lm"]


class BuildError(RuntimeError):
    """The compiler is missing or failed; the message holds its output."""


def compiler() -> str:
    return env.CPU_CC.get()


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


def _env_tag() -> str:
    """Machine kind: architecture plus a hash of the compiler, the flags and the CPU's feature flags."""
    tag = _digest(compiler().encode(), " ".join(CFLAGS + LDFLAGS).encode(), _cpu_flags().encode())
    return f"{platform.machine()}-{tag}"


def library_name() -> str:
    """File name of the library for this machine kind and this source."""
    return f"groupnorm_cpu-{_env_tag()}-{_digest(*(p.read_bytes() for p in SOURCES + HEADERS))}.so"


def _remove_stale(directory: Path, keep: str) -> None:
    """Delete libraries of older sources built for this machine kind (other machines' builds stay)."""
    prefix = f"groupnorm_cpu-{_env_tag()}-"
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


def find_library() -> Path | None:
    """An already-built library for this machine, if any cache directory has one."""
    name = library_name()
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


def compile_library(sources: list[Path], output: Path) -> None:
    """Compile ``sources`` into the shared library ``output`` with this module's flags.

    :func:`build` calls it on :data:`SOURCES`; ``scripts/cpu_kernel_ab.py`` on another revision's sources. Raises
    :class:`BuildError` with the compiler's output when it fails.
    """
    cmd = [_require_compiler(), *CFLAGS, *(str(p) for p in sources), "-o", str(output), *LDFLAGS]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr.strip()}")


def build(force: bool = False) -> Path:
    """Compile the library unless one exists; return its path. Raises :class:`BuildError` on failure."""
    if not force:
        found = find_library()
        if found is not None:
            return found
    _require_compiler()
    out_dir = _writable_dir()
    target = out_dir / library_name()
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=out_dir)
    os.close(fd)
    try:
        compile_library(SOURCES, Path(tmp))
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
        _remove_stale(out_dir, target.name)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


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
