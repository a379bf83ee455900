"""The launchers' host path: per-layout launch cache, launch counts of the key shapes, the looped path (one program
per unit, statistics then apply), the parameter gradients over many samples, and the scripts built on them."""

import importlib.util
import json
import pathlib
import sys

import pytest
import torch

from groupnorm.bench.shapes import KEY_SHAPES
from groupnorm.ops.triton.planner import DeviceSpec, Tuning
from groupnorm.reference import group_norm_ref
from groupnorm.testing import assert_close_verbose, make_input

pytestmark = pytest.mark.triton

H200 = DeviceSpec(sm_count=132, l2_bytes=50 * 2**20)
SCRIPTS = pathlib.Path(__file__).resolve().parents[2] / "scripts"
# Many units and no one-pass: every unit is one program that loops over it twice (on channels_last, units of two
# groups).
LOOPED = (
    DeviceSpec(sm_count=1, l2_bytes=1 << 30),
    Tuning(
        max_onepass_elems=1, tile_elems=32, max_block_c=4, channels_last_width=4, channels_last_min_width=4
    ),
)


def _script(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _meta(shape, layout, dtype=torch.bfloat16):
    x = torch.empty(shape, dtype=dtype, device="meta")
    return x.movedim(1, -1).contiguous().movedim(-1, 1) if layout == "channels_last" else x


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("named", KEY_SHAPES, ids=lambda s: s.name)
def test_key_shapes_launch_at_most_3_forward_and_5_backward(named, layout):
    from groupnorm.ops.triton import launch

    summary = launch.launch_summary(_meta(named.shape, layout), named.groups, "silu", device=H200)
    assert 1 <= summary["forward_launches"] <= 3, summary
    assert 1 <= summary["backward_launches"] <= 5, summary


def test_resnet_stage_one_loops_one_program_per_group():
    # 32 x 256 x 56 x 56: one program per group would do, so one launch forward, two backward (with dweight).
    from groupnorm.ops.triton import launch

    summary = launch.launch_summary(_meta((32, 256, 56, 56), "nchw"), 32, "relu", device=H200)
    assert summary["forward_plan"].startswith("looped") and summary["forward_launches"] == 1
    assert summary["backward_launches"] == 2
    assert summary["forward_variant"] == summary["backward_variant"] == "tiled"
    assert summary["forward_kernels"] == ["fwd_apply_kernel"]
    assert summary["backward_kernels"] == ["bwd_dx_kernel", "bwd_param_kernel"]


def test_summary_names_the_flat_kernels_of_nchw_runs():
    from groupnorm.ops.triton import launch

    summary = launch.launch_summary(_meta((32, 2048, 7, 7), "nchw"), 32, "relu", device=H200)
    assert summary["forward_variant"] == summary["backward_variant"] == "flat"
    assert summary["forward_kernels"] == ["fwd_onepass_flat_kernel"]
    assert summary["backward_kernels"] == ["bwd_onepass_flat_kernel", "bwd_param_kernel"]
    channels_last = launch.launch_summary(_meta((32, 2048, 7, 7), "channels_last"), 32, "relu", device=H200)
    assert channels_last["forward_kernels"] == ["fwd_onepass_kernel"]


class _Recorder:
    """Stands in for a kernel module: ``kernels.NAME[grid](*args, **kwargs)`` records (NAME, grid, kwargs)."""

    def __init__(self) -> None:
        self.launched: list = []

    def __getattr__(self, name: str):
        return _RecordedKernel(self.launched, name)


class _RecordedKernel:
    def __init__(self, launched: list, name: str) -> None:
        self.launched, self.name = launched, name

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.launched.append((self.name, grid, kwargs))


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize(
    "shape,groups",
    [((1, 512, 64, 64), 32), ((32, 256, 56, 56), 32), ((32, 2048, 7, 7), 32), ((1, 128, 20, 64, 64), 32)],
)
@pytest.mark.parametrize("tuning", [None, Tuning(max_waves=16)])
def test_the_launchers_launch_what_the_plan_names(shape, groups, layout, tuning):
    from groupnorm.ops.triton import launch

    x = _meta(shape, layout)
    c = shape[1]
    w, b = torch.empty(c, device="meta"), torch.empty(c, device="meta")
    stats = torch.empty(shape[0], groups, device="meta")
    fk, bk = _Recorder(), _Recorder()
    launch.forward(x, w, b, groups, 1e-5, "silu", None, None, None, device=H200, tuning=tuning, fk=fk)
    mask = [True, True, True, False, False, False]
    launch.backward(
        torch.empty_like(x), x, w, b, stats, stats, groups, "silu", None, None, None, mask,
        device=H200, tuning=tuning, bk=bk,
    )  # fmt: skip
    key = (x.shape, x.stride(), x.dtype)
    fwd = launch.forward_launch(key, x.device, groups, "silu", (True, True, False, False), None, H200, tuning)
    bwd = launch.backward_launch(
        key, key, x.device, groups, "silu", (True, True, False, False), None, (*mask,), H200, tuning
    )
    for recorder, described in ((fk, fwd), (bk, bwd)):
        planned = described.schedule.launches
        assert [(name, grid) for name, grid, _kw in recorder.launched] == [
            (p.kernel, p.grid) for p in planned
        ]
        for (_name, _grid, kwargs), step in zip(recorder.launched, planned, strict=True):
            assert kwargs.items() >= step.meta.items()  # the plan's constants, unchanged


def test_launch_description_is_cached_per_layout():
    from groupnorm.ops.triton import launch

    x = _meta((2, 64, 9, 9), "nchw")
    launch.forward_launch.cache_clear()
    first = launch.launch_summary(x, 8, device=H200)
    hits = launch.forward_launch.cache_info().hits
    assert launch.launch_summary(torch.empty_like(x), 8, device=H200) == first
    assert launch.forward_launch.cache_info().hits == hits + 1
    launch.launch_summary(
        _meta((2, 64, 9, 9), "channels_last"), 8, device=H200
    )  # another layout: planned anew
    assert launch.forward_launch.cache_info().misses == 2


def test_layout_errors_are_raised_on_every_call_not_cached():
    from groupnorm.ops.triton import launch

    bad = torch.randn(2, 6, 3)
    for _ in range(2):
        with pytest.raises(ValueError, match="C=6 .* G=4"):
            launch.forward(bad, None, None, 4, 1e-5, "none", None, None, None)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_looped_path_forward_and_backward(kernels, layout):
    from groupnorm.ops.triton import launch

    spec, tuning = LOOPED
    x = make_input((3, 8, 5, 6), torch.float32, layout, seed=3)
    p = launch.plan_for(x, 4, x.element_size(), spec, tuning)
    assert not p.one_pass and p.split == 1 and p.block_g == (2 if layout == "channels_last" else 1)
    gen = torch.Generator().manual_seed(4)
    w, b = torch.randn(8, generator=gen), torch.randn(8, generator=gen)
    on = kernels.device
    y, mean, rstd = launch.forward(
        x.to(on), w.to(on), b.to(on), 4, 1e-5, "silu", None, None, None, device=spec, tuning=tuning
    )
    y = y.cpu()
    expected = torch.nn.functional.silu(group_norm_ref(x, 4, w, b))
    assert_close_verbose(y, expected, atol=2e-5, rtol=1e-5, name="y")

    leaves = [t.clone().double().requires_grad_() for t in (x, w, b)]
    grad = torch.randn(x.shape, generator=gen).to(memory_format=torch.contiguous_format)
    ref = torch.nn.functional.silu(torch.nn.functional.group_norm(leaves[0], 4, leaves[1], leaves[2]))
    expected_grads = torch.autograd.grad(ref, leaves, grad.double())
    grads = launch.backward(
        grad.to(on), x.to(on), w.to(on), b.to(on), mean, rstd, 4, "silu", None, None, None, [True] * 6,
        device=spec, tuning=tuning,
    )  # fmt: skip
    dx, dw, db = (t.cpu() for t in grads[:3])
    for got, want, name in zip((dx, dw, db), expected_grads, ("dx", "dweight", "dbias"), strict=True):
        assert_close_verbose(got, want.float(), atol=1e-4, rtol=1e-4, name=name)


def test_parameter_gradients_over_more_samples_than_one_tile(kernels):
    # 40 samples, 64 channels: the parameter kernel sums [32, 64] tiles twice; scale and shift per sample.
    n, c = 40, 64
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(n, c, 2, generator=gen)
    w, b = torch.randn(c, generator=gen), torch.randn(c, generator=gen)
    scale, shift = 0.5 * torch.randn(n, c, generator=gen), torch.randn(n, c, generator=gen)
    grad = torch.randn(x.shape, generator=gen)
    _y, mean, rstd = kernels.forward(x, w, b, 1, 1e-5, "none", None, scale, shift)
    dx, dw, db, _dres, dscale, dshift = kernels.backward(
        grad, x, w, b, mean, rstd, 1, "none", None, scale, shift
    )

    leaves = [t.clone().double().requires_grad_() for t in (x, w, b, scale, shift)]
    xh = torch.nn.functional.group_norm(leaves[0], 1)
    out = (xh * leaves[1][:, None] + leaves[2][:, None]) * (1 + leaves[3][..., None]) + leaves[4][..., None]
    expected = torch.autograd.grad(out, leaves, grad.double())
    for got, want, name in zip((dx, dw, db, dscale, dshift), expected, ("dx", "dw", "db", "dscale", "dshift"),
                               strict=True):  # fmt: skip
        assert_close_verbose(got, want.float(), atol=1e-4, rtol=1e-4, name=name)


def test_host_overhead_script_reports_both_keys(tmp_path):
    host_overhead = _script("host_overhead")
    records = host_overhead.measure(batches=1, calls=2, shapes=KEY_SHAPES[:2])
    assert [r["layout"] for r in records] == ["nchw", "channels_last"] * 2
    for r in records:
        assert r["forward_us"] > 0 and r["backward_us"] > 0
        assert 1 <= r["forward_launches"] <= 3 and 1 <= r["backward_launches"] <= 5
    out = tmp_path / "host.json"
    host_overhead.main(["--json", str(out), "--batches", "1", "--calls", "1", "--forward-target", "1e9",
                        "--backward-target", "1e9"])  # fmt: skip
    report = json.loads(out.read_text())
    assert {"forward_us", "backward_us", "machine", "cases"} <= set(report)
    assert len(report["cases"]) == 2 * len(KEY_SHAPES)
    # The kernels are back once it is done.
    from groupnorm.ops.triton import forward_kernels

    assert not isinstance(forward_kernels.fwd_onepass_kernel, host_overhead.StubKernel)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the dry run's CPU routing needs the interpreter")
def test_gpu_bench_row_and_table_on_cpu(tmp_path):
    # One row of the GPU check's table, on CPU through the interpreter: what the dry run of gpu_check.sh does.
    from groupnorm.bench import harness
    from groupnorm.bench.shapes import lookup
    from groupnorm.ops import registry

    gpu_bench = _script("gpu_bench")
    gpu_bench.route_cpu_through_interpreter()
    try:
        case = harness.Case(lookup(["2x8x3x3:4"])[0], "channels_last", "float32", "silu", False, "fwd+bwd")
        row = gpu_bench.run_row(case, "cpu", ["groupnorm", "torch"], copy_bps=1e9)
    finally:
        registry.unregister_implementation("triton-interpreter", "cpu")
    ours = row["providers"]["groupnorm"]
    assert "error" not in ours and ours["max_err"] < 1e-4 and ours["graph_us"] is None
    assert row["forward_launches"] == 1 and row["backward_launches"] == 2
    path = tmp_path / "results.jsonl"
    gpu_bench._append(str(path), row)
    text = gpu_bench.table(str(path))
    assert "2x8x3x3" in text and "groupnorm" in text.splitlines()[0]
    assert len(gpu_bench.rows(KEY_SHAPES)) == (len(KEY_SHAPES) + 2) * 2 * 2  # fp32 rows for two ResNet shapes
