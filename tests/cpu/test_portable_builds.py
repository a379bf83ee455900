"""The CPU kernels built for each x86-64 level, x86-64-v4 (AVX-512), x86-64-v3 (AVX2) and x86-64 (SSE2 only), and
checked wherever this CPU can run them (skipped, with the reason, where it cannot).

The library is normally compiled for the machine it runs on (``-march=native``): that leaves the code of the other
levels, which other machines run, to no other test; and the machines the suite runs on differ (some have AVX-512,
some do not). Each target is built once per session into a temporary directory (as ``GROUPNORM_CPU_MARCH`` would
build it) and put in the loader's place, so that ``kernels.forward`` / ``backward`` run its code. Checked for
each: it is the build it says (the vector width it reports and, with objdump, no wider registers in its code), it
gives the same bits for 1 and 2 threads, and it passes the conformance suite of ``groupnorm.testing``. The
determinism tests (test_determinism.py) run on every one of these builds too.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import torch

import groupnorm.ops.cpu as cpu_impl
from groupnorm.ops.cpu import build, kernels, loader
from groupnorm.testing import conformance_cases, run_conformance

from .conftest import target_library

pytestmark = pytest.mark.portable

# target -> (the vector width its build reports, registers its code must use, registers it must not)
VARIANTS = {
    "x86-64-v4": (512, ("%zmm",), ()),
    "x86-64-v3": (256, ("%ymm",), ("%zmm",)),
    "x86-64": (128, ("%xmm",), ("%ymm", "%zmm")),
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request, tmp_path_factory):
    """(target, path, library) of one target's build, compiled once per session."""
    path, lib = target_library(request.param, tmp_path_factory.getbasetemp() / "builds")
    return request.param, path, lib


@pytest.fixture
def serving(variant, monkeypatch):
    """The variant's library serves the CPU kernels for the test."""
    monkeypatch.setitem(loader._state, "lib", variant[2])
    return variant


def test_the_build_is_its_target(variant):
    march, path, lib = variant
    bits, used, unused = VARIANTS[march]
    assert lib.gn_vector_bits() == bits
    objdump = shutil.which("objdump")
    if objdump is None:
        return  # the width the build reports is the check left
    code = subprocess.run([objdump, "-d", str(path)], capture_output=True, text=True, check=True).stdout
    for register in used:
        assert register in code, f"the {march} build has no {register} instructions"
    for register in unused:
        assert register not in code, f"the {march} build has {register} instructions"


def test_the_loader_takes_the_target_from_the_environment(variant, monkeypatch):
    march, path, _ = variant
    monkeypatch.setenv("GROUPNORM_CPU_MARCH", march)
    monkeypatch.setenv("GROUPNORM_CACHE_DIR", str(path.parent))
    loader.reset()
    try:
        assert build.find_library() == path  # the variant's name: found, nothing compiled
        loaded = loader.library()
        assert loaded is not None and loaded.gn_vector_bits() == VARIANTS[march][0]
    finally:
        loader.reset()


# (shape, groups, layout, activation, dtype): NCHW rows long and short, one group (the split path), channels_last
# with 64-channel statistics chunks, with C not a multiple of the vector width, with wide pixels; 2-byte types
# through the per-sample, NCHW-run and channels_last-block paths. All above the size that takes two threads.
THREAD_CASES = [
    ((3, 64, 33, 31), 8, "contiguous", "silu", torch.float32),
    ((8, 64, 9, 9), 32, "contiguous", "none", torch.float32),
    ((1, 32, 64, 80), 1, "contiguous", "gelu_tanh", torch.float32),
    ((3, 64, 33, 31), 8, "channels_last", "gelu", torch.float32),
    ((2, 40, 4, 16, 16), 4, "channels_last", "relu", torch.float32),
    ((4, 1024, 3, 3), 32, "channels_last", "none", torch.float32),
    ((8, 64, 9, 9), 32, "contiguous", "silu", torch.bfloat16),
    ((1, 64, 32, 32), 32, "contiguous", "none", torch.float16),
    ((1, 64, 32, 32), 8, "channels_last", "silu", torch.bfloat16),
]


def _forward_backward(x, params, groups, act):
    w, b, res, sc, sh, grad = params
    y, mean, rstd = kernels.forward(x, w, b, groups, 1e-5, act, res, sc, sh)
    return (y, mean, rstd, *kernels.backward(grad, x, w, b, mean, rstd, groups, act, res, sc, sh, [True] * 6))


def _case_id(case) -> str:
    shape, groups, layout, act, dtype = case
    return f"{'x'.join(map(str, shape))}-G{groups}-{layout}-{act}-{str(dtype).removeprefix('torch.')}"


@pytest.mark.parametrize(
    "shape,groups,layout,act,dtype", THREAD_CASES, ids=[_case_id(c) for c in THREAD_CASES]
)
def test_same_bits_for_one_and_two_threads(serving, shape, groups, layout, act, dtype):
    gen = torch.Generator().manual_seed(5)
    n, c = shape[:2]

    def tensor():
        t = (torch.randn(*shape, generator=gen) * 2 + 1).to(dtype)
        return t.movedim(1, -1).contiguous().movedim(-1, 1) if layout == "channels_last" else t

    x = tensor()
    params = (torch.randn(c, generator=gen), torch.randn(c, generator=gen), tensor())
    params += (0.5 * torch.randn(n, c, generator=gen), torch.randn(n, c, generator=gen), tensor())
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _forward_backward(x, params, groups, act)
        torch.set_num_threads(2)
        two = _forward_backward(x, params, groups, act)
    finally:
        torch.set_num_threads(threads)
    for i, (a, b) in enumerate(zip(one, two)):
        assert torch.equal(a, b), f"{serving[0]}: output {i} differs between 1 and 2 threads"


def test_conforms(serving):
    """Within tolerance of the float64 reference on every case of the suite the compiled kernels serve."""
    cases = [case for case in conformance_cases() if cpu_impl.supports(case.inputs()["x"])]
    assert cases
    run_conformance(kernels.forward, kernels.backward, cases, name=f"cpu-c built for {serving[0]}")
