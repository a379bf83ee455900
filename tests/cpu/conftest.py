"""CPU kernel tests: the loaded library, and the library built for each x86-64 target this CPU can run.

A test that needs the compiled kernels fails when they did not load: a broken build must not turn a quarter of the
suite into skips. ``GROUPNORM_TEST_ALLOW_NO_KERNELS=1`` is the explicit opt-out for a machine without a C compiler
(those tests then skip, with the loader's reason).
"""

from __future__ import annotations

import ctypes
import platform
import shutil
from pathlib import Path

import pytest

import groupnorm.ops  # noqa: F401
import groupnorm.ops.cpu  # noqa: F401
from groupnorm import env, machine
from groupnorm.ops.cpu import build, loader

ALLOW_NO_KERNELS = env.TEST_ALLOW_NO_KERNELS.name
# every -march target the tests build: the loaded (native) library, then the x86-64 levels, widest first
TARGETS = ["native", "x86-64-v4", "x86-64-v3", "x86-64"]


def require_library() -> ctypes.CDLL:
    """The loaded library; a test failure (or, with the opt-out set, a skip) naming why it is missing."""
    lib = loader.library()
    if lib is None:
        reason = f"CPU kernel library unavailable: {loader.error()}"
        if env.TEST_ALLOW_NO_KERNELS.get():
            pytest.skip(f"{reason} ({ALLOW_NO_KERNELS} is set)")
        pytest.fail(
            f"{reason}; set {ALLOW_NO_KERNELS}=1 to skip the kernel tests on a machine without a compiler"
        )
    return lib


@pytest.fixture
def kernel_lib():
    return require_library()


_built: dict[str, tuple[Path, ctypes.CDLL]] = {}


def target_library(march: str, tmp_root: Path) -> tuple[Path, ctypes.CDLL]:
    """(path, library) of the kernels built for ``march`` (once per session), or a skip saying why this machine
    cannot run that build."""
    if march == "native":
        lib = require_library()
        return Path(lib._name), lib
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip(f"{march}: the x86-64 targets need an x86-64 CPU, this is {platform.machine()}")
    if not machine.can_run(march):
        pytest.skip(f"{march}: this CPU ({machine.cpu_model()}) runs only {machine.isa_level()} code")
    if shutil.which(build.compiler()) is None:
        pytest.skip(f"{march}: no C compiler ({build.compiler()!r})")
    if march not in _built:
        directory = tmp_root / march
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / build.library_name(march)
        build.compile_library(build.SOURCES, path, march)
        lib = ctypes.CDLL(str(path))
        loader._declare(lib)
        assert lib.gn_abi_version() == loader.ABI_VERSION
        _built[march] = (path, lib)
    return _built[march]


@pytest.fixture(params=TARGETS)
def any_build(request, tmp_path_factory, monkeypatch):
    """Each build in turn serves ``kernels.forward`` / ``backward`` for the test: (target, library)."""
    path, lib = target_library(request.param, tmp_path_factory.getbasetemp() / "builds")
    monkeypatch.setitem(loader._state, "lib", lib)
    return request.param, lib
