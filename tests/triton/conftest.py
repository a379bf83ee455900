"""Run the Triton kernels on CPU tensors through Triton's interpreter when there is no GPU.

``TRITON_INTERPRET`` is read when a kernel is defined (``@triton.jit``) and again by Triton's lazily imported
modules at the first launch, so it is set here, before the kernel modules are imported, and left set for the
session; if triton was imported earlier in the session, its @jit library functions and our kernels are
redefined. Where CUDA is present nothing is forced: the same tests run compiled on the GPU.
"""

from __future__ import annotations

import importlib
import os
import sys

import pytest
import torch

ON_CUDA = torch.cuda.is_available()
# Triton's own library functions (tl.sum, tl.zeros, ...) are @jit functions too, defined when triton.language is
# imported: the interpreter must be on before that, not only before our kernels are defined.
TRITON_IMPORTED_BEFORE = False
if not ON_CUDA and os.environ.get("TRITON_INTERPRET") != "1":
    TRITON_IMPORTED_BEFORE = "triton" in sys.modules
    os.environ["TRITON_INTERPRET"] = "1"

pytest.importorskip("triton")


def _fix_old_interpreter_index() -> None:
    """Triton < 3.7's interpreter turns a scalar into a Python int with ``int(array_of_shape_1)``, which
    NumPy >= 2.4 refuses (loops with run-time bounds then fail). Later Triton squeezes the array first; do the
    same on the older interpreter."""
    import numpy as np
    from triton.runtime import interpreter

    try:
        int(np.zeros(1))
        return
    except TypeError:
        pass
    original = getattr(interpreter, "_patch_lang_tensor", None)
    if original is None or getattr(original, "_squeezes_index", False):
        return

    def patch_lang_tensor(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.squeeze()))

    patch_lang_tensor._squeezes_index = True
    interpreter._patch_lang_tensor = patch_lang_tensor


if not ON_CUDA:
    _fix_old_interpreter_index()
    # Something imported triton earlier in this process (torch._dynamo does, for one): redefine the @jit
    # functions of triton.language and of our kernel modules, in dependency order, now that the interpreter is on.
    modules = ["groupnorm.ops.triton.epilogue", "groupnorm.ops.triton.tiles", "groupnorm.ops.triton.forward_kernels",
               "groupnorm.ops.triton.backward_kernels", "groupnorm.ops.triton.forward_launcher",
               "groupnorm.ops.triton.backward_launcher", "groupnorm.ops.triton.summary",
               "groupnorm.ops.triton.launch"]  # fmt: skip
    if TRITON_IMPORTED_BEFORE:
        modules = ["triton.language.standard", "triton.language", *modules]
    for name in modules:
        if name in sys.modules:
            importlib.reload(sys.modules[name])

from groupnorm import env  # noqa: E402
from groupnorm.ops.triton.planner import DeviceSpec, Tuning  # noqa: E402

DEVICE = torch.device("cuda" if ON_CUDA else "cpu")

# Launch configurations that force each path of the planner on any shape (see planner.py), sized for the
# interpreter, which pays per program: "one_pass" is the default tuning on a device no wider than the units;
# "split" spreads each unit over several small-tile programs (about 16 programs in all); "waves" adds an L2 of
# 4 KiB, so a unit of more than 2 KiB is read twice and smaller ones go in waves of a few units (up to 64 waves;
# the default allows one). Where a unit count reaches 16, "split" gets one program per unit: the looped path,
# statistics and apply in one program. On channels_last
# inputs, split and waves take units of several groups (rows of 8 and 16 channels).
PATHS: dict[str, tuple[DeviceSpec, Tuning]] = {
    "one_pass": (DeviceSpec(sm_count=1, l2_bytes=1 << 30), Tuning()),
    "split": (
        DeviceSpec(sm_count=4, l2_bytes=1 << 30),
        Tuning(
            max_onepass_elems=1,
            tile_elems=32,
            max_block_c=4,
            channels_last_width=8,
            channels_last_min_width=8,
        ),
    ),
    "waves": (
        DeviceSpec(sm_count=2, l2_bytes=4096),
        Tuning(max_onepass_elems=1, tile_elems=64, max_block_c=8, channels_last_width=16, max_waves=64),
    ),
}


def _dev(t):
    return None if t is None else t.to(DEVICE)


def _host(t):
    return t.cpu() if t.device.type != "cpu" else t


class Kernels:
    """The launchers on the test device under a named path; inputs and outputs are CPU tensors."""

    paths = PATHS
    device = DEVICE

    def forward(
        self,
        x,
        weight=None,
        bias=None,
        num_groups=1,
        eps=1e-5,
        activation="none",
        residual=None,
        scale=None,
        shift=None,
        *,
        path="one_pass",
        tuning=None,
    ):
        from groupnorm.ops.triton import launch

        spec, default_tuning = PATHS[path]
        args = [_dev(t) for t in (x, weight, bias)] + [num_groups, eps, activation]
        args += [_dev(t) for t in (residual, scale, shift)]
        out = launch.forward(*args, device=spec, tuning=tuning or default_tuning)
        return tuple(_host(t) for t in out)

    def backward(
        self,
        grad_y,
        x,
        weight,
        bias,
        mean,
        rstd,
        num_groups,
        activation="none",
        residual=None,
        scale=None,
        shift=None,
        output_mask=(True,) * 6,
        *,
        path="one_pass",
        tuning=None,
    ):
        from groupnorm.ops.triton import launch

        spec, default_tuning = PATHS[path]
        tensors = [_dev(t) for t in (grad_y, x, weight, bias, mean, rstd)]
        extra = [_dev(t) for t in (residual, scale, shift)]
        out = launch.backward(
            *tensors,
            num_groups,
            activation,
            *extra,
            list(output_mask),
            device=spec,
            tuning=tuning or default_tuning,
        )
        return tuple(_host(t) for t in out)


@pytest.fixture
def kernels() -> Kernels:
    return Kernels()


def pytest_generate_tests(metafunc):
    """A test that takes ``path`` and does not choose runs on every path."""
    chosen = set()
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0]
        chosen.update(n.strip() for n in names.split(",")) if isinstance(names, str) else chosen.update(names)
    if "path" in metafunc.fixturenames and "path" not in chosen:
        metafunc.parametrize("path", list(PATHS))


_TEST_TIMEOUT_S = env.TEST_TIMEOUT_S.get()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """With ``GROUPNORM_TEST_TIMEOUT_S`` set (scripts/gpu_check.sh does), a test that runs longer fails with a
    clear message instead of using up the run's time limit (SIGALRM: main thread, POSIX)."""
    import signal

    if _TEST_TIMEOUT_S <= 0 or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(_signum, _frame):
        raise TimeoutError(f"{item.nodeid} ran longer than GROUPNORM_TEST_TIMEOUT_S={_TEST_TIMEOUT_S} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(_TEST_TIMEOUT_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
