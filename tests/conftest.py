"""Fixtures for the whole suite: process-wide state put back after every test, and the implementation's route.

Global state: torch's thread count, default dtype and deterministic-algorithms mode, the environment and glibc's
allocator thresholds are process-wide, so a test that changes them and does not put them back changes every later
test (``torch.set_num_threads(1)`` left behind makes the rest of the suite run single-threaded). The autouse
fixture :func:`_global_state_restored` restores them after each test and warns (:class:`LeakedGlobalState`, with
the test's id) so that the leak gets fixed where it is made. Tests that want one thread use :func:`one_thread`.
(``torch.set_num_interop_threads`` may be called only once per process, so it cannot leak and is not watched.)

Implementation under test: small plain float32 CPU calls of ``groupnorm.group_norm`` and the layers are served by
torch's own ``group_norm`` (``groupnorm.ops.routing.served_by_torch``), so a test comparing such a call with torch
compares torch with itself. A test of the project's implementation takes :func:`implementation`, which keeps
every call on the implementation and records each call's route for the test to assert on.
"""

from __future__ import annotations

import os
import platform
import warnings

import pytest
import torch

from groupnorm.ops import registry, routing


class LeakedGlobalState(UserWarning):
    """A test changed process-wide state and did not put it back (the fixture did)."""


# Variables that are not a test's doing: pytest's own (the test id and phase), and those libraries set for the
# rest of the process when first imported or used (torch.compile's and Triton's caches and compile workers,
# scikit-learn's and joblib's OpenMP settings); taking them away again would only make the library redo it.
_NOT_WATCHED = {
    "PYTEST_CURRENT_TEST",
    "TORCHINDUCTOR_CACHE_DIR",
    "TORCH_WARM_POOL",
    "_TORCHINDUCTOR_PYOBJECT_TENSOR_DATA_PTR",
    "CUDA_HOME",
    "TRITON_CACHE_DIR",
    "TRITON_PTXAS_PATH",
    "TRITON_LIBDEVICE_PATH",
    "KMP_DUPLICATE_LIB_OK",
    "KMP_INIT_AT_FORK",
}


def _restore_environment(before: dict[str, str]) -> list[str]:
    changed = sorted(
        k
        for k in set(before) | set(os.environ)
        if before.get(k) != os.environ.get(k) and k not in _NOT_WATCHED
    )
    for key in changed:
        if key in before:
            os.environ[key] = before[key]
        else:
            del os.environ[key]
    return [f"environment variable {k}" for k in changed]


# glibc's defaults for the thresholds that groupnorm.bench.allocator.keep_freed_memory raises to 1 GiB
# (DEFAULT_MMAP_THRESHOLD_MIN and DEFAULT_TRIM_THRESHOLD, 128 KiB). glibc has no call that reads them back, so the
# fixture notes when a test asks for kept memory and sets these afterwards. (Setting them at all turns off
# glibc's dynamic mmap threshold for the rest of the process: as close to "undone" as glibc allows.)
_GLIBC_DEFAULT_THRESHOLD = 128 * 1024


def _restore_glibc_thresholds() -> None:
    import ctypes

    from groupnorm.bench import allocator

    libc = ctypes.CDLL(None)
    libc.mallopt(allocator.M_TRIM_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)
    libc.mallopt(allocator.M_MMAP_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)


@pytest.fixture(autouse=True)
def _global_state_restored(request):
    # no monkeypatch here: its undo runs after this fixture's teardown would (a test's monkeypatch.setenv would
    # look like a leak); this fixture is set up first and torn down last
    threads = torch.get_num_threads()
    dtype = torch.get_default_dtype()
    deterministic = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    environment = dict(os.environ)
    allocator_changed = []
    allocator, keep = None, None
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        from groupnorm.bench import allocator

        keep = getattr(allocator, "keep_freed_memory", None)
    if keep is not None:

        def noted_keep_freed_memory(*args, **kwargs):
            allocator_changed.append(True)
            return keep(*args, **kwargs)

        # every caller (groupnorm bench, the small-calls tool, the tests) goes through the module attribute
        allocator.keep_freed_memory = noted_keep_freed_memory
    try:
        yield
    finally:
        if keep is not None:
            allocator.keep_freed_memory = keep
    leaks = _restore_environment(environment)
    if torch.get_num_threads() != threads:
        leaks.append(f"torch.get_num_threads() {threads} -> {torch.get_num_threads()}")
        torch.set_num_threads(threads)
    if torch.get_default_dtype() != dtype:
        leaks.append(f"torch.get_default_dtype() {dtype} -> {torch.get_default_dtype()}")
        torch.set_default_dtype(dtype)
    now = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    if now != deterministic:
        leaks.append(f"deterministic algorithms (enabled, warn_only) {deterministic} -> {now}")
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
    if allocator_changed:
        # expected (benchmarks keep freed memory on purpose), so undone without a warning
        _restore_glibc_thresholds()
    if leaks:
        warnings.warn(
            LeakedGlobalState(f"{request.node.nodeid} left {'; '.join(leaks)} changed (restored)"),
            stacklevel=1,
        )


@pytest.fixture
def one_thread():
    """torch on one thread for the test, then the thread count as it was (tiny models run faster on one thread:
    OpenMP threads of small ops spin against other processes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Routes:
    """The route of every call of ``groupnorm.group_norm`` (and so of the layers) made during a test."""

    def __init__(self) -> None:
        # (route taken, name of the implementation the registry is meant to pick for the input, if known)
        self.calls: list[tuple[routing.Route, str | None]] = []

    def assert_implementation(self, name: str | None = None, *, calls: int | None = None) -> None:
        """Assert that the calls recorded since the last check (at least one) were all served by the
        implementation: ``name``, else the one meant for each input (the compiled CPU kernels where they load
        and take the input, else the plain-torch one). Then forget them."""
        assert self.calls, "no call of groupnorm.group_norm was made"
        if calls is not None:
            assert len(self.calls) == calls, (
                f"{len(self.calls)} calls of groupnorm.group_norm, expected {calls}"
            )
        for taken, meant in self.calls:
            assert taken.via == "implementation", f"a call was served by {taken.name}, not the implementation"
            want = name or meant
            if want is not None:
                assert taken.implementation.name == want, (
                    f"a call was served by implementation {taken.implementation.name!r}, expected {want!r}"
                )
        self.calls.clear()


def _meant_implementation(x: object) -> str | None:
    """The implementation the project registers for a CPU input, independently of the registry's order."""
    if not isinstance(x, torch.Tensor) or x.device.type != "cpu":
        return None
    from groupnorm.ops import cpu

    return cpu.NAME if cpu.supports(x) else registry.fallback().name


@pytest.fixture
def implementation(monkeypatch) -> Routes:
    """Every call on the project's implementation, whatever its size (``GROUPNORM_CPU_SMALL_NUMEL=0``, read per
    call), with its route recorded: the test asserts with ``implementation.assert_implementation()``."""
    monkeypatch.setenv("GROUPNORM_CPU_SMALL_NUMEL", "0")
    routes = Routes()
    take = routing.route

    def recorded_route(*args, **kwargs):
        taken = take(*args, **kwargs)
        if not kwargs.get("inside_op"):
            routes.calls.append((taken, _meant_implementation(args[0] if args else kwargs.get("x"))))
        return taken

    # groupnorm.functional looks the function up on the module at every call (the op imports its own name,
    # and only routes inside_op there)
    monkeypatch.setattr(routing, "route", recorded_route)
    return routes
