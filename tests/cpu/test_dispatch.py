"""Which implementation serves a call: every non-empty size, dtypes, ranks, and the fallback without a library."""

from __future__ import annotations

import warnings

import pytest
import torch

import groupnorm.ops.cpu as cpu
from groupnorm.ops import registry, torch_impl
from groupnorm.ops.cpu import loader


@pytest.mark.parametrize("shape", [(1, 1), (1, 4), (1, 32, 1, 127), (2, 64, 32, 32)])
def test_every_non_empty_size_is_served_by_the_kernels(kernel_lib, shape):
    assert registry.select(torch.randn(shape)).name == cpu.NAME


@pytest.mark.parametrize(
    "x",
    [
        pytest.param(torch.randn(2, 8, 4, 4, dtype=torch.float64), id="float64"),
        pytest.param(torch.randn(2, 8, 2, 2, 2, 2), id="rank6"),
        pytest.param(torch.randn(0, 8, 4, 4), id="empty"),
    ],
)
def test_not_served_goes_to_torch(kernel_lib, x):
    assert registry.select(x).name == "torch"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_served_dtypes_through_the_op(kernel_lib, dtype):
    x = torch.randn(2, 16, 8, 8).to(dtype)
    assert registry.select(x).name == cpu.NAME
    y, mean, rstd = torch.ops.groupnorm.forward(x, None, None, 4, 1e-5, "silu", None, None, None)
    y_t, mean_t, _ = torch_impl.forward(x, None, None, 4, 1e-5, "silu", None, None, None)
    assert y.dtype == dtype
    torch.testing.assert_close(mean, mean_t)
    torch.testing.assert_close(y, y_t)


def test_fallback_when_library_cannot_be_built(monkeypatch, tmp_path):
    monkeypatch.setenv("GROUPNORM_CACHE_DIR", str(tmp_path))  # no library here
    monkeypatch.setenv("GROUPNORM_CPU_CC", str(tmp_path / "no-such-compiler"))
    loader.reset()
    try:
        x = torch.randn(2, 16, 8, 8)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            impl = registry.select(x)
            y, _, _ = torch.ops.groupnorm.forward(x, None, None, 4, 1e-5, "none", None, None, None)
        assert impl.name == "torch"
        messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        assert any("CPU kernel unavailable" in m and "no-such-compiler" in m for m in messages), messages
        assert "no-such-compiler" in (loader.error() or "")
        torch.testing.assert_close(y, torch_impl.forward(x, None, None, 4, 1e-5, "none", None, None, None)[0])
    finally:
        loader.reset()


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("GROUPNORM_CPU_KERNEL", "0")
    loader.reset()
    try:
        assert registry.select(torch.randn(2, 16, 8, 8)).name == "torch"
    finally:
        loader.reset()


def test_opcheck(kernel_lib):
    x = torch.randn(2, 16, 5, 5).contiguous(memory_format=torch.channels_last)
    w, b, res = torch.randn(16), torch.randn(16), torch.randn(2, 16, 5, 5)
    args = (x, w, b, 4, 1e-5, "gelu", res, torch.randn(2, 16), torch.randn(2, 16))
    assert registry.select(x).name == cpu.NAME
    torch.library.opcheck(torch.ops.groupnorm.forward.default, args)
    y, mean, rstd = torch.ops.groupnorm.forward(*args)
    bargs = (torch.randn_like(y), x, w, b, mean, rstd, 4, "gelu", res, args[7], args[8], [True] * 6)
    torch.library.opcheck(torch.ops.groupnorm.backward.default, bargs)
