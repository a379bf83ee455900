"""Under torch.compile the op decomposes into the Triton launches on CUDA and stays whole everywhere else; eager
calls are unchanged.

Without a GPU the CUDA side is checked on fake CUDA tensors (tests/ops/fake_cuda_trace.py, in a process of its
own); tests/triton/test_triton_compile_traced.py compiles and runs it with Inductor on a GPU.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from functorch.compile import aot_function
from torch._library.custom_ops import OPDEFS
from torch._subclasses.functional_tensor import FunctionalTensorMode

import groupnorm.ops  # noqa: F401
from groupnorm.ops import decomposition

pytest.importorskip("triton")

import groupnorm.ops.triton as gn_triton  # noqa: E402
from groupnorm.ops.triton import launch, traced  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FORWARD_SCHEMA = (
    "groupnorm::forward(Tensor x, Tensor? weight, Tensor? bias, SymInt num_groups, float eps, str activation, "
    "Tensor? residual, Tensor? scale, Tensor? shift) -> (Tensor, Tensor, Tensor)"
)
BACKWARD_SCHEMA = (
    "groupnorm::backward(Tensor grad_y, Tensor x, Tensor? weight, Tensor? bias, Tensor mean, Tensor rstd, "
    "SymInt num_groups, str activation, Tensor? residual, Tensor? scale, Tensor? shift, bool[] output_mask) "
    "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)"
)
# What the launchers allocate and the kernels write: the only tensors a traced launch may clone.
WRITTEN = {"Y", "MEAN", "RSTD", "PART", "DX", "DRES", "DW", "DB", "DSCALE", "DSHIFT", "PART_P", "PART_Q"}


def test_one_op_name_each_with_its_schema_and_a_functionalization_rule():
    assert str(torch.ops.groupnorm.forward.default._schema) == FORWARD_SCHEMA
    assert str(torch.ops.groupnorm.backward.default._schema) == BACKWARD_SCHEMA
    for name in ("groupnorm::forward", "groupnorm::backward"):
        assert FunctionalTensorMode in OPDEFS[name]._torch_dispatch_fns


def test_the_triton_entry_runs_the_launchers_eagerly_and_traces_the_wrapped_ones():
    impl = gn_triton.implementation()
    assert impl.forward is launch.forward and impl.backward is launch.backward
    if traced.traceable():
        assert (impl.traced_forward, impl.traced_backward) == (traced.forward, traced.backward)
        assert {k.__name__ for k in traced.kernels()} >= {"fwd_apply_kernel", "bwd_param_kernel"}
    else:  # interpreted kernels (TRITON_INTERPRET=1): compile keeps the op whole
        assert impl.traced_forward is None and impl.traced_backward is None


def test_cpu_calls_keep_the_op_whole_and_match_eager():
    x, w, b = torch.randn(2, 8, 4, 4), torch.randn(8), torch.randn(8)
    assert decomposition.traced_function(x, (x, w, b), "traced_forward") is None
    codes = []

    def fn(t, weight, bias):
        return torch.ops.groupnorm.forward(t, weight, bias, 4, 1e-5, "silu", None, None, None)[0]

    got = aot_function(fn, fw_compiler=lambda gm, _: codes.append(gm.code) or gm)(x, w, b)
    assert "groupnorm.forward" in codes[0] and "triton_kernel_wrapper" not in codes[0]
    torch.testing.assert_close(got, fn(x, w, b), rtol=0, atol=0)


@pytest.fixture(scope="module")
def fake_cuda_report() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "ops" / "fake_cuda_trace.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


TRACED_CASES = ["small", "channels_last_residual", "video_1x128x20x256x256"]


@pytest.mark.slow
@pytest.mark.parametrize("case", TRACED_CASES)
def test_cuda_graphs_hold_the_eager_launches(fake_cuda_report, case):
    report = fake_cuda_report[case]
    for step, eager_launches in zip(("forward", "backward"), report["eager_launches"], strict=True):
        graph = report[step]
        assert not graph["opaque_forward"] and not graph["opaque_backward"], (step, graph)
        assert graph["launches"] == [eager_launches], (step, graph)
        assert all(name.endswith("_kernel") for name in graph["kernels"]), graph["kernels"]
        cloned = {name.strip(" '") for group in graph["cloned"] for name in group.split(",")}
        assert cloned <= WRITTEN, (step, cloned - WRITTEN)  # inputs are never copied


@pytest.mark.slow
@pytest.mark.parametrize("case", ["cpu", "export", "dynamic"])
def test_cpu_export_and_symbolic_shapes_keep_the_op_whole(fake_cuda_report, case):
    for step, graph in fake_cuda_report[case].items():
        assert graph["launches"] == [0], graph
        assert graph[f"opaque_{step}"], graph


@pytest.mark.slow
def test_the_kernels_key_the_compile_caches(fake_cuda_report):
    for op_name in ("groupnorm::forward", "groupnorm::backward"):
        assert {"fwd_apply_kernel", "bwd_dx_kernel"} <= set(fake_cuda_report["cache_kernels"][op_name])
