"""Building the library: into a fresh cache directory, concurrently, and the names it uses."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from groupnorm import machine
from groupnorm.ops.cpu import build, loader

from .conftest import require_library


def test_the_kernels_loaded():
    """The sentinel: a failed or missing build fails the suite (GROUPNORM_TEST_ALLOW_NO_KERNELS=1 opts out)."""
    lib = require_library()
    assert lib.gn_abi_version() == loader.ABI_VERSION
    assert machine.kernel_build().startswith(build.target())


def test_a_failed_build_fails_the_strict_build(tmp_path):
    # `make install` builds with --strict: a compiler that fails must fail the install, not leave torch serving
    env = dict(os.environ, GROUPNORM_CACHE_DIR=str(tmp_path), GROUPNORM_CPU_CC="false")
    strict = subprocess.run(
        [sys.executable, "-m", "groupnorm.ops.cpu.build", "--strict"], env=env, capture_output=True, text=True
    )
    assert strict.returncode != 0 and "CPU kernel not built" in strict.stderr, strict.stderr
    lenient = subprocess.run([sys.executable, "-m", "groupnorm.ops.cpu.build"], env=env, capture_output=True)
    assert lenient.returncode == 0  # without --strict (a user's first call), torch serves instead


@pytest.mark.slow
def test_the_first_call_that_builds_says_so_once(tmp_path):
    if shutil.which(build.compiler()) is None:
        pytest.skip("no C compiler")
    env = dict(os.environ, GROUPNORM_CACHE_DIR=str(tmp_path))
    call = "import torch, groupnorm; groupnorm.group_norm(torch.randn(2, 8, 4, 4), 2, activation='silu')"
    first = subprocess.run([sys.executable, "-c", call], env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    (line,) = [ln for ln in first.stderr.splitlines() if ln.startswith("groupnorm:")]
    assert "compiled the CPU kernels" in line and str(tmp_path) in line and "GROUPNORM_CPU_KERNEL=0" in line
    again = subprocess.run([sys.executable, "-c", call], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "groupnorm:" not in again.stderr  # cached: silent


@pytest.mark.slow
def test_concurrent_builds_into_one_directory(tmp_path):
    if shutil.which(build.compiler()) is None:
        pytest.skip("no C compiler")
    env = dict(os.environ, GROUPNORM_CACHE_DIR=str(tmp_path))
    cmd = [sys.executable, "-m", "groupnorm.ops.cpu.build", "--strict"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    files = sorted(f.name for f in tmp_path.iterdir())
    assert files == [build.library_name()], files  # one library, no temporary files left behind
    check = "import ctypes,sys; print(ctypes.CDLL(sys.argv[1]).gn_abi_version())"
    out = subprocess.run(
        [sys.executable, "-c", check, str(tmp_path / files[0])], capture_output=True, text=True
    )
    assert out.stdout.strip() == str(loader.ABI_VERSION), out.stderr


def test_read_only_cache_dir_is_reported(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    monkeypatch.setenv("GROUPNORM_CACHE_DIR", str(ro))
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(build.BuildError, match="not writable"):
            build.build()
    finally:
        ro.chmod(0o755)


def test_no_fast_math_at_link():
    # -ffast-math (or -Ofast) on the link line pulls in crtfastmath.o: flush-to-zero for the whole process
    assert not any(
        f in ("-ffast-math", "-Ofast", "-funsafe-math-optimizations") for f in build.cflags() + build.LDFLAGS
    )


def test_the_target_is_a_flag_and_part_of_the_name(monkeypatch):
    monkeypatch.delenv("GROUPNORM_CPU_MARCH", raising=False)
    native = build.library_name()
    assert "-native-" in native and "-march=native" in build.cflags()
    monkeypatch.setenv("GROUPNORM_CPU_MARCH", "x86-64-v3")
    assert "-march=x86-64-v3" in build.cflags() and "-march=native" not in build.cflags()
    assert "-x86-64-v3-" in build.library_name() and build.library_name() != native
    assert build.library_name("native") == native


def test_a_target_must_be_one_word(monkeypatch):
    monkeypatch.setenv("GROUPNORM_CPU_MARCH", "native -O0")
    with pytest.raises(ValueError, match="GROUPNORM_CPU_MARCH"):
        build.cflags()
