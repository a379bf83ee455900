"""Optional benchmark providers: the Liger one registers when its package imports, and any provider that cannot be
loaded is named, with its error, by ``groupnorm bench``."""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch
import torch.nn.functional as F

import groupnorm.bench
from groupnorm.bench import providers
from groupnorm.cli import main

LIGER_PROVIDER_MODULE = "groupnorm.bench.providers_liger"
MISSING = "groupnorm.bench.no_such_provider_module"


@pytest.fixture
def fresh_registry(monkeypatch):
    """The registry as before any optional provider was loaded; the real one (and its modules) come back after."""
    monkeypatch.setattr(
        providers, "_PROVIDERS", {k: v for k, v in providers._PROVIDERS.items() if k != "liger"}
    )
    monkeypatch.setattr(providers, "_load_errors", {})
    monkeypatch.setattr(providers, "_plugins_loaded", False)
    saved = sys.modules.pop(LIGER_PROVIDER_MODULE, None)
    yield
    # A provider module imported against a stub must not outlive the test (a later import would reuse it).
    sys.modules.pop(LIGER_PROVIDER_MODULE, None)
    if saved is not None:
        sys.modules[LIGER_PROVIDER_MODULE] = saved
    elif hasattr(groupnorm.bench, "providers_liger"):
        delattr(groupnorm.bench, "providers_liger")


def _stub_liger(monkeypatch) -> None:
    """Fake ``liger_kernel.ops.group_norm``: its autograd function's signature, computed by torch."""

    class LigerGroupNormFunction:
        @staticmethod
        def apply(x, weight, bias, num_channels, num_groups, eps):
            assert num_channels == x.shape[1]
            return F.group_norm(x, num_groups, weight, bias, eps)

    group_norm = types.ModuleType("liger_kernel.ops.group_norm")
    group_norm.LigerGroupNormFunction = LigerGroupNormFunction
    ops = types.ModuleType("liger_kernel.ops")
    ops.group_norm = group_norm
    root = types.ModuleType("liger_kernel")
    root.ops = ops
    for module in (root, ops, group_norm):
        monkeypatch.setitem(sys.modules, module.__name__, module)


def _inputs(activation: str = "silu") -> providers.Inputs:
    x = torch.randn(2, 16, 4, 4)
    return providers.Inputs(
        x=x, weight=torch.randn(16), bias=torch.randn(16), groups=4, activation=activation,
        residual=torch.randn_like(x), grad=torch.randn_like(x),
    )  # fmt: skip


def test_liger_provider_registers_with_liger_kernel_present(monkeypatch, fresh_registry):
    _stub_liger(monkeypatch)
    assert "liger" in providers.names()
    assert providers.load_errors() == {}
    inp = _inputs()
    with pytest.raises(ValueError, match="liger runs on CUDA only, got a tensor on cpu"):
        providers.get("liger").setup(inp, "fwd")
    # What the setup times on CUDA: Liger's normalization, then the same epilogue as torch eager.
    liger = sys.modules[LIGER_PROVIDER_MODULE]
    for activation in ("none", "silu", "gelu_tanh"):
        got = liger.liger_eager(inp.x, inp.weight, inp.bias, inp.residual, groups=4, activation=activation)
        want = providers.torch_eager(
            inp.x, inp.weight, inp.bias, inp.residual, groups=4, activation=activation
        )
        torch.testing.assert_close(got, want)


def test_unloadable_provider_is_listed_with_its_error(monkeypatch, capsys, fresh_registry):
    monkeypatch.setattr(providers, "PLUGIN_MODULES", {"missing-test": MISSING})
    assert main(["bench", "--list"]) == 0
    line = f"provider missing-test not loaded: ModuleNotFoundError: No module named '{MISSING}'"
    assert line in capsys.readouterr().out.splitlines()
    assert "missing-test" not in providers.names()
    with pytest.raises(ValueError, match="provider missing-test not loaded: ModuleNotFoundError"):
        providers.get("missing-test")


def test_unloadable_provider_is_in_the_run_output_json_and_page(
    monkeypatch, capsys, tmp_path, fresh_registry
):
    monkeypatch.setattr(providers, "PLUGIN_MODULES", {"missing-test": MISSING})
    out, page = tmp_path / "r.json", tmp_path / "r.md"
    argv = ["bench", "--shapes", "2x32x6x6:8", "--layouts", "nchw", "--activations", "none", "--modes", "fwd",
            "--rounds", "2", "--min-round-ms", "0.5", "--json", str(out), "--md", str(page)]  # fmt: skip
    assert main(argv) == 0
    error = f"ModuleNotFoundError: No module named '{MISSING}'"
    assert f"groupnorm bench: provider missing-test not loaded: {error}" in capsys.readouterr().err
    assert all(r["providers_not_loaded"] == {"missing-test": error} for r in json.loads(out.read_text()))
    assert f"| provider missing-test not loaded | {error} |" in page.read_text()
