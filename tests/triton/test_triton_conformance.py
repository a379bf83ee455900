"""The Triton launchers against the conformance suite of ``groupnorm.testing``, on every planner path (through
the interpreter where there is no GPU; see conftest.py).

The interpreter pays per program, so each path runs every named shape, precision and epilogue at least once
(``combinations="each"``) rather than every pair of them as tests/test_conformance.py does; each path starts
the cycles elsewhere, so the three paths together meet more combinations.
"""

from functools import partial

import pytest

from groupnorm.testing import check_case, conformance_cases

from .conftest import ON_CUDA, PATHS

pytestmark = pytest.mark.triton

# Every named shape but "group spans blocks" (18432 elements), whose hundreds of small-tile programs on the
# split path would take minutes in the interpreter.
MAX_NUMEL = 8192
# The split and waves paths' small tiles make the interpreter's backward the slow part: above this size those
# paths check the forward alone there (compiled on a GPU, everything is checked).
BACKWARD_MAX_NUMEL = {"one_pass": MAX_NUMEL, "split": 1024, "waves": 1024}

CASES = [
    pytest.param(path, case, id=f"{path}-{case}")
    for rotation, path in enumerate(PATHS)
    for case in conformance_cases(combinations="each", max_numel=MAX_NUMEL, rotate=3 * rotation)
]


@pytest.mark.parametrize("path,case", CASES)
def test_launchers_conform(kernels, path, case):
    forward = partial(kernels.forward, path=path)
    backward = partial(kernels.backward, path=path)
    if not ON_CUDA and case.numel > BACKWARD_MAX_NUMEL[path]:
        backward = None
    check_case(forward, backward, case, name=f"triton {path}")
