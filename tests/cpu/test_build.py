"""Building the library: into a fresh cache directory, concurrently, and the names it uses."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from groupnorm.ops.cpu import build, loader


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
