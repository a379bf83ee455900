"""Plain float32 CPU calls go where the committed measurements say the kernels are at least as fast as torch."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from groupnorm.ops import routing

ROOT = Path(__file__).resolve().parents[1]


def _route(x, activation="none", grad=False):
    w, b = torch.ones(x.shape[1]), torch.zeros(x.shape[1])
    if grad:
        x = x.requires_grad_()
    return routing.route(x, w, b, 8, 1e-5, activation, None, None, None).via


def test_the_packaged_rule_is_what_the_committed_measurements_give():
    spec = importlib.util.spec_from_file_location("plain_routing", ROOT / "scripts" / "plain_routing.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    packaged = (ROOT / "src" / "groupnorm" / "ops" / "plain_routing.json").read_text()
    assert packaged == script.rendered(), "run python scripts/plain_routing.py"
    rule = json.loads(packaged)
    cpus = {cpu for case in rule["cases"] for cpu in case["ratio_by_cpu"]}
    assert len(cpus) >= 2, cpus  # measured on more than one CPU, each named


@pytest.mark.parametrize(
    "shape,layout,grad,expected",
    [
        (
            (2, 256, 56, 56),
            "nchw",
            False,
            "torch_group_norm",
        ),  # NCHW: torch as fast or faster on a measured CPU
        ((2, 256, 56, 56), "nchw", True, "torch_group_norm"),
        ((8, 1024, 14, 14), "channels_last", False, "torch_group_norm"),  # 4-D channels_last forward: torch
        ((8, 1024, 14, 14), "channels_last", True, "implementation"),  # 0.8 MB samples, training: kernels
        ((2, 256, 56, 56), "channels_last", True, "torch_group_norm"),  # 3.2 MB samples: torch
        ((1, 128, 8, 64, 64), "channels_last", True, "implementation"),  # channels_last_3d: torch copies
        ((1, 128, 8, 64, 64), "channels_last", False, "implementation"),
    ],
)
def test_plain_calls_follow_the_rule(shape, layout, grad, expected):
    x = torch.empty(shape)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    assert _route(x, grad=grad) == expected


def test_fused_epilogues_and_the_override_keep_the_kernels(monkeypatch):
    x = torch.empty(2, 256, 56, 56)
    assert _route(x, activation="silu", grad=True) == "implementation"  # something to fuse: the kernels
    monkeypatch.setenv(
        "GROUPNORM_CPU_SMALL_NUMEL", "0"
    )  # every call on the kernels (how the rule is measured)
    assert _route(x) == "implementation"


def test_no_grad_mode_is_a_forward():
    x = torch.empty(8, 1024, 14, 14).contiguous(memory_format=torch.channels_last).requires_grad_()
    with torch.no_grad():
        assert _route(x) == "torch_group_norm"
    assert _route(x) == "implementation"


def test_an_explicit_size_alone_decides_and_eps_of_any_real_type_works(monkeypatch):
    x = torch.empty(2, 64, 64, 64)
    monkeypatch.setenv(
        "GROUPNORM_CPU_SMALL_NUMEL", "1"
    )  # documented: below 1 element torch, else the kernels
    assert _route(x) == "implementation"
    monkeypatch.delenv("GROUPNORM_CPU_SMALL_NUMEL")
    import groupnorm

    y = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(groupnorm.group_norm(y, 4, eps="1e-5"), groupnorm.group_norm(y, 4, eps=1e-5))


def test_without_the_compiled_kernels_plain_calls_go_to_torch(monkeypatch):
    from groupnorm.ops.cpu import loader

    x = torch.empty(1, 128, 8, 16, 16).contiguous(memory_format=torch.channels_last_3d)
    assert _route(x) == "implementation"
    monkeypatch.setitem(loader._state, "lib", None)  # no compiler: the plain-torch composite would serve
    assert _route(x) == "torch_group_norm"
