"""The whole-model benchmark (`groupnorm bench --models`): records, outputs, skips and the correctness gate.

Tiny models and sizes only; timings themselves are not asserted.
"""

from __future__ import annotations

import doctest
import json
import sys

import pytest
import torch
from torch import nn

from groupnorm.bench import models, models_command, models_report, op_kinds
from groupnorm.cli import main
from groupnorm.patching.report import PatchReport

TABLE_HEADER = "| model | layout | stock ms | patched ms | ratio median | ratio spread | what patch fused |"
ROW_FIELDS = {
    "model", "layout", "mode", "device", "stock_ms", "patched_ms", "ratio_median", "ratio_min", "ratio_max",
    "patch_swapped", "patch_fused", "patch_left", "max_rel_diff", "torch_version", "groupnorm_version", "cpu",
    "diffusers_version", "timm_version", "torch_threads",
}  # fmt: skip


def _block() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.GroupNorm(4, 16),
        nn.SiLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 5),
    )


def _tiny(mode: str) -> models.Workload:
    return models.Workload(
        name=f"tiny-{mode}",
        description="conv, GN + SiLU, pool, linear",
        mode=mode,
        build=_block,
        make_inputs=lambda gen: (torch.randn(4, 3, 8, 8, generator=gen),),
        classes=5,
    )


class _Scaled(nn.Module):
    """Multiplies the wrapped model's output by ``scale``; with ``grad_only`` the forward value is unchanged and
    only the gradient is scaled."""

    def __init__(self, inner: nn.Module, scale: float, grad_only: bool = False):
        super().__init__()
        self.inner, self.scale, self.grad_only = inner, scale, grad_only

    def forward(self, x):
        y = self.inner(x)
        if self.grad_only:
            return y.detach() + self.scale * (y - y.detach())
        return y * self.scale


def _broken_patch(scale: float, grad_only: bool = False):
    def patch(model):
        return _Scaled(model, scale, grad_only), PatchReport()

    return patch


@pytest.mark.parametrize("mode", models.MODES)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_tiny_workload_is_checked_and_timed(mode, layout):
    row = models.run_workload(_tiny(mode), layout, rounds=3)
    assert row["error"] is None and row["skipped"] is None
    assert row["stock_ms"] > 0 and row["patched_ms"] > 0
    assert row["ratio_min"] <= row["ratio_median"] <= row["ratio_max"]
    assert (row["patch_swapped"], row["patch_fused"], row["patch_left"]) == (1, 1, 0)
    assert row["patch_fused_activations"] == {"silu": 1}
    assert row["max_rel_diff"] <= models.OUTPUT_RTOL
    assert row["inputs"] == [[4, 3, 8, 8]]
    if mode == "train":
        assert 0 <= row["grad_noise"] < models.GRAD_RTOL and row["grad_rtol"] == models.GRAD_RTOL


@pytest.mark.parametrize("mode", models.MODES)
def test_a_patched_model_whose_output_differs_is_refused(mode):
    with pytest.raises(models.OutputMismatch, match=r"tiny-.* \(nchw\): patched output differs from stock"):
        models.run_workload(_tiny(mode), "nchw", rounds=1, patch=_broken_patch(1.001))
    # within tolerance is accepted
    row = models.run_workload(_tiny(mode), "nchw", rounds=1, patch=_broken_patch(1 + 1e-6))
    assert row["ratio_median"] > 0


def test_a_patched_model_whose_gradients_differ_is_refused():
    with pytest.raises(models.OutputMismatch, match=r"patched gradient of 0\.weight differs"):
        models.run_workload(_tiny("train"), "nchw", rounds=1, patch=_broken_patch(1.01, grad_only=True))
    # a forward-only workload does not look at gradients
    models.run_workload(_tiny("eval"), "nchw", rounds=1, patch=_broken_patch(1.01, grad_only=True))


def test_refused_rows_have_no_ratio_and_say_why():
    rows = models.run_all([_tiny("eval")], ["nchw"], rounds=1, patch=_broken_patch(2.0))
    assert rows[0]["ratio_median"] is None and rows[0]["stock_ms"] is None
    assert "differs from stock" in rows[0]["error"]
    assert "| refused: tiny-eval (nchw): patched output differs" in models_report.markdown_table(rows)


def test_check_outputs_tolerance():
    s = torch.linspace(-2, 2, 100)
    assert models.check_outputs({"output": s}, {"output": s + 1e-5}) < models.OUTPUT_RTOL
    with pytest.raises(models.OutputMismatch, match="max \\|patched - stock\\| = 0.01 "):
        models.check_outputs({"output": s}, {"output": s + 1e-2})
    with pytest.raises(models.OutputMismatch):
        models.check_outputs({"output": s}, {"output": s * float("nan")})
    with pytest.raises(models.OutputMismatch, match="shape"):
        models.check_outputs({"output": s}, {"output": s[:5]})
    with pytest.raises(models.OutputMismatch, match="other tensors"):
        models.check_outputs({"output": s}, {"output": s, "loss": s.sum()})
    # gradients get the looser tolerance
    models.check_outputs({"gradient of w": s}, {"gradient of w": s + 1e-3})


def test_gradient_tolerance_follows_stocks_own_float32_noise():
    g = {"output": torch.ones(3), "gradient of a": torch.linspace(-1, 1, 50), "gradient of b": torch.ones(4)}
    calm = {k: v.clone() for k, v in g.items()}
    assert models.gradient_rtol(g, calm) == (0.0, models.GRAD_RTOL)
    chaotic = dict(calm, **{"gradient of b": g["gradient of b"] * 1.02})  # stock itself moves by 2 %
    noise, rtol = models.gradient_rtol(g, chaotic)
    assert noise == pytest.approx(0.02) and rtol == pytest.approx(models.NOISE_FACTOR * 0.02)
    close = dict(g, **{"gradient of a": g["gradient of a"] * 1.05})
    assert models.check_outputs(g, close, rtol) == pytest.approx(0.05)
    with pytest.raises(models.OutputMismatch, match="patched gradient of a differs"):
        models.check_outputs(g, close)  # without the measured noise: refused
    with pytest.raises(models.OutputMismatch, match="patched gradient of a differs"):
        models.check_outputs(g, dict(g, **{"gradient of a": -g["gradient of a"]}), rtol)  # a wrong backward


def test_diffusers_models_are_skipped_when_diffusers_is_absent(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # `import diffusers` now raises ImportError
    workloads = models.select(models.builtin_workloads(models.QUICK), ["vae-decode", "unet2d"])
    rows = models.run_all(workloads, ["nchw"])
    assert [r["model"] for r in rows] == ["vae-decode-32", "unet2d"]
    assert all(
        r["skipped"].startswith("diffusers is not installed") and r["ratio_median"] is None for r in rows
    )
    assert "| skipped: diffusers is not installed" in models_report.markdown_table(rows)


def test_command_end_to_end(tmp_path, capsys):
    pytest.importorskip("timm")
    out, page = tmp_path / "m.json", tmp_path / "m.md"
    argv = ["bench", "--models", "vae-decode,timm-resnet50-gn-eval", "--vae", "tiny", "--latent-sizes", "8",
            "--image-size", "32", "--batch", "1", "--rounds", "1", "--min-round-ms", "0",
            "--json", str(out), "--md", str(page)]  # fmt: skip
    assert main(argv) == 0
    rows = json.loads(out.read_text())
    assert [(r["model"], r["layout"]) for r in rows] == [
        ("vae-decode-8", "nchw"),
        ("vae-decode-8", "channels_last"),
        ("timm-resnet50-gn-eval", "nchw"),
        ("timm-resnet50-gn-eval", "channels_last"),
    ]
    timm_rows = rows[2:]
    assert all(ROW_FIELDS <= set(r) for r in timm_rows)
    assert all(r["ratio_median"] > 0 and r["patch_fused"] > 0 for r in timm_rows)
    vae = rows[0]
    if vae["skipped"] is None:  # diffusers installed
        assert vae["ratio_median"] > 0 and vae["patch_scope"] == "decoder"
    else:
        assert vae["skipped"].startswith("diffusers")
    text = page.read_text()
    assert TABLE_HEADER in text and "| timm-resnet50-gn-eval | channels_last |" in text
    assert "groupnorm bench --models vae-decode,timm-resnet50-gn-eval --vae tiny" in text
    assert "| timm_version |" in text and "## Models" in text
    assert TABLE_HEADER in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--models", "resnet9"], "unknown model 'resnet9'"),
        (["--models", "--layouts", "nhwc"], "unknown value 'nhwc'"),
        (["--models", "--shapes", "2x32x6x6:8"], "--shapes belongs to the kernel benchmark"),
        (["--models", "--rounds", "0"], "--rounds must be at least 1"),
        (["--models", "--vae", "tiny", "--batch", "0"], "batch must be a positive integer"),
        (["--quick"], "--quick apply to --models only"),
        (["--models", "--profile", "-1"], "--profile must be 0 or more calls, got -1"),
        (["--profile", "2"], "--profile apply to --models only"),
    ],
)
def test_command_rejects_bad_values(argv, message, capsys):
    assert main(["bench", *argv]) == 2
    assert message in capsys.readouterr().err


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="layout=.nhwc."):
        models.run_workload(_tiny("eval"), "nhwc")
    with pytest.raises(ValueError, match="mode=.infer."):
        models.Workload("x", "", "infer", _block, lambda gen: ())
    with pytest.raises(ValueError, match="vae=.huge."):
        models.builtin_workloads(models.Sizes(vae="huge"))


def test_quick_sizes_and_explicit_options():
    parser_args = type("Args", (), dict(quick=True, vae=None, latent_sizes=[16], unet_size=None,
                                        image_size=None, batch=4))()  # fmt: skip
    sizes = models_command.sizes(parser_args)
    assert sizes == models.Sizes(vae="small", latent_sides=(16,), unet_side=32, image_side=64, batch=4)


def test_profiled_rows_split_each_models_time_by_operator_kind():
    row = models.run_workload(_tiny("eval"), "nchw", rounds=1, profile_calls=2)
    stock, patched = row["stock_kinds_ms"], row["patched_kinds_ms"]
    assert list(stock) == list(patched) == op_kinds.kind_names(op_kinds.MODEL_KINDS)
    # stock runs torch's group_norm and silu; patched the fused op, whose activation is inside the norm
    assert stock["conv"] > 0 and stock["norm"] > 0 and stock["activation"] > 0
    assert patched["conv"] > 0 and patched["norm"] > 0 and patched["activation"] == 0
    table = models_report.norm_share_table([row])
    stock_line, patched_line = table.splitlines()[2:]
    assert stock_line.startswith("| tiny-eval | nchw | stock |") and stock_line.endswith("% | - |")
    assert patched_line.startswith("| tiny-eval | nchw | patched |") and patched_line.endswith("x |")
    assert "## Where the time goes" in models_report.markdown_page(
        [row], "groupnorm bench --models --profile 2"
    )
    assert models_report.norm_share_table([models.run_workload(_tiny("eval"), "nchw", rounds=1)]) == ""


def test_operator_kinds_are_matched_by_name_first_match_wins():
    kinds = op_kinds.MODEL_KINDS
    assert op_kinds.classify("aten::mkldnn_convolution", kinds) == "conv"
    assert op_kinds.classify("groupnorm::forward", kinds) == "norm"
    assert op_kinds.classify("aten::native_group_norm", kinds) == "norm"
    assert op_kinds.classify("aten::baddbmm", kinds) == "attention"  # not an elementwise add
    assert op_kinds.classify("aten::add_", kinds) == op_kinds.OTHER
    assert op_kinds.classify("aten::silu", op_kinds.STEP_KINDS) == op_kinds.OTHER
    with pytest.raises(ValueError, match="calls=0"):
        op_kinds.self_time_by_kind(lambda: None, calls=0)


@pytest.mark.parametrize("module", [models, models_report, op_kinds])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_rows():
    row = models.run_workload(_tiny("train"), "channels_last", device="cuda", rounds=2)
    assert row["device"] == "cuda" and row["ratio_median"] > 0 and "stock_cpu_ms" not in row
