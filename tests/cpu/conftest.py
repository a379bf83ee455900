"""CPU kernel tests: the library fixture (a test that needs the compiled kernels skips without them)."""

import pytest

import groupnorm.ops  # noqa: F401
import groupnorm.ops.cpu  # noqa: F401
from groupnorm.ops.cpu import loader


@pytest.fixture
def kernel_lib():
    if loader.library() is None:
        pytest.skip(f"CPU kernel library unavailable: {loader.error()}")
    return loader.library()
