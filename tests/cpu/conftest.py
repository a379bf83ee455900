"""CPU kernel tests: serve every size with the compiled kernels (the size threshold is tested on its own)."""

import pytest

import groupnorm.ops  # noqa: F401
import groupnorm.ops.cpu  # noqa: F401
from groupnorm.ops.cpu import loader


@pytest.fixture(autouse=True)
def _kernels_for_all_sizes(monkeypatch):
    monkeypatch.setenv("GROUPNORM_CPU_MIN_NUMEL", "0")


@pytest.fixture
def kernel_lib():
    if loader.library() is None:
        pytest.skip(f"CPU kernel library unavailable: {loader.error()}")
    return loader.library()
