"""The benchmark produces well-formed records (timings themselves are not asserted)."""

from __future__ import annotations

import json
import os
import platform
import resource

import pytest
import torch

from groupnorm.bench import allocator, harness, providers, report, shapes
from groupnorm.cli import main

REQUIRED = {
    "provider", "mode", "layout", "dtype", "shape", "groups", "activation", "residual", "median_ms", "gbps",
    "copy_gbps", "pct_copy", "ratio_vs_torch", "torch_version", "groupnorm_version", "cpu", "device",
}  # fmt: skip
TINY = shapes.Shape("tiny", (2, 32, 6, 6), 8, "test")


@pytest.mark.parametrize("mode", providers.MODES)
@pytest.mark.parametrize("layout", harness.LAYOUTS)
def test_run_case_records(mode, layout):
    case = harness.Case(TINY, layout, "float32", "silu", True, mode)
    records = harness.run_case(case, ["groupnorm", "torch"], rounds=2, min_round_s=0.0005)
    assert [r["provider"] for r in records] == ["groupnorm", "torch"]
    for r in records:
        assert r["error"] is None, r["error"]
        assert r["median_ms"] > 0 and r["gbps"] > 0 and r["copy_gbps"] > 0 and r["median_cpu_ms"] > 0
        assert r["bytes"] == harness.bytes_moved(case, 4)
    assert records[1]["ratio_vs_torch"] == 1.0 and records[1]["ratio_vs_torch_paired"] == 1.0
    assert records[0]["ratio_vs_torch_paired"] > 0


def test_paired_ratio_is_the_median_of_per_round_ratios(monkeypatch):
    # a machine that slows down between rounds: the paired ratio sees 2x in every round, the ratio of medians not
    # groupnorm, torch, copy; per round, after an unrecorded warm-up round (its 99.0 must not count)
    table = [[99.0, 1.0, 10.0, 100.0], [99.0, 2.0, 5.0, 200.0], [99.0, 1.0, 1.0, 1.0]]
    seen: dict[int, int] = {}
    calls = [0, 0, 0]

    def per_call(self, fn, iters):
        who = seen.setdefault(id(fn), len(seen))  # the warm-up round: providers in their listed order
        calls[who] += 1
        return table[who][calls[who] - 1]

    monkeypatch.setattr(harness.Clock, "per_call", per_call)
    monkeypatch.setattr(harness, "_calibrate", lambda clock, fn, min_round_s: 1)
    case = harness.Case(TINY, "nchw", "float32", "none", False, "fwd")
    ours = harness.run_case(case, ["groupnorm", "torch"], rounds=3)[0]
    assert ours["ratio_vs_torch_paired"] == 2.0  # per round: 2, 0.5, 2
    assert ours["ratio_vs_torch"] == 0.5  # medians: 5 / 10


def test_bytes_moved_counts_tensors():
    base = dict(shape=TINY, layout="nchw", dtype="float32")
    numel = TINY.numel * 4
    assert (
        harness.bytes_moved(harness.Case(**base, activation="none", residual=False, mode="fwd"), 4)
        == 2 * numel
    )
    assert (
        harness.bytes_moved(harness.Case(**base, activation="silu", residual=True, mode="bwd"), 4)
        == 5 * numel
    )
    fb = harness.Case(**base, activation="none", residual=True, mode="fwd+bwd")
    assert harness.bytes_moved(fb, 4) == (3 + 4) * numel


def test_layouts_are_what_they_say():
    x = torch.randn(2, 8, 3, 4, 5)
    assert harness.to_layout(x, "channels_last").is_contiguous(memory_format=torch.channels_last_3d)
    assert harness.to_layout(x, "nchw").is_contiguous()


def test_failing_provider_is_reported_not_fatal():
    def broken(inp, mode):
        raise RuntimeError("no such kernel here")

    providers.register_provider("broken-test", broken, default=False)
    case = harness.Case(TINY, "nchw", "float32", "none", False, "fwd")
    records = harness.run_case(case, ["broken-test", "torch"], rounds=1, min_round_s=0.0005)
    assert records[0]["median_ms"] is None and "no such kernel here" in records[0]["error"]
    assert records[1]["median_ms"] > 0


def test_command_writes_json_csv_and_resumes(tmp_path, capsys):
    out, csv_path = tmp_path / "r.json", tmp_path / "r.csv"
    argv = ["bench", "--shapes", "2x32x6x6:8", "--layouts", "nchw", "--activations", "none", "--modes", "fwd",
            "--rounds", "2", "--min-round-ms", "0.5", "--json", str(out), "--csv", str(csv_path)]  # fmt: skip
    assert main(argv) == 0
    records = json.loads(out.read_text())
    assert len(records) == 2 and all(REQUIRED <= set(r) for r in records)
    assert {r["malloc"] for r in records} <= {allocator.KEPT, "default (not glibc)"}
    assert csv_path.read_text().splitlines()[0].startswith("provider,mode,layout")
    table = capsys.readouterr().out
    assert "| groupnorm |" in table and "vs torch" in table
    first = out.read_text()
    page = tmp_path / "r.md"
    assert (
        main([*argv, "--resume", "--markdown", str(page)]) == 0
    )  # nothing left to do: the file is unchanged
    assert out.read_text() == first
    text = page.read_text()
    assert (
        "groupnorm bench --preset quick" in text and "--shapes 2x32x6x6:8" in text and "| groupnorm |" in text
    )
    assert (
        "| cpu_l3 |" in text and "| cpu_isa |" in text and "| kernel_build |" in text
    )  # where it was measured


def test_command_rejects_bad_values(capsys):
    assert main(["bench", "--layouts", "nhwc"]) == 2
    assert "nhwc" in capsys.readouterr().err
    assert main(["bench", "--shapes", "2x30x4x4:8"]) == 2


def test_presets_match_the_issue():
    quick = harness_cases("quick")
    assert {c.dtype for c in quick} == {"float32"}
    assert {c.layout for c in quick} == {"nchw", "channels_last"}
    assert {c.activation for c in quick} == {"none", "silu"}
    assert {c.mode for c in quick} == {"fwd", "fwd+bwd"}
    assert not any(c.residual for c in quick)
    full_shapes = {c.shape.name for c in harness_cases("full")}
    assert {"resnet50-s1-n2", "resnet50-s4-n32", "sd-vae-128x256", "video-3d-128x8x64"} <= full_shapes


def harness_cases(preset):
    from argparse import Namespace

    from groupnorm.bench import command

    args = Namespace(
        preset=preset, residual=None, layouts=None, dtypes=None, activations=None, modes=None, shapes=None
    )
    return command._grid(args)


def test_markdown_summary():
    rec = dict(provider="groupnorm", mode="fwd", layout="nchw", dtype="float32", activation="none",
               ratio_vs_torch=1.5)  # fmt: skip
    assert "1.50x" in report.summary([rec, dict(rec, ratio_vs_torch=1.5)])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_kept_memory_means_no_page_faults_on_reallocation():
    assert allocator.keep_freed_memory() == allocator.KEPT
    size = 24 << 20  # with glibc's defaults each allocation of this size faults on all of its 6144 pages
    pages = size // 4096
    for _ in range(4):  # the heap may still have to grow once or twice
        torch.empty(size, dtype=torch.uint8).fill_(1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        torch.empty(size, dtype=torch.uint8).fill_(1)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 2 * pages, (
        f"{faults} page faults for 5 reallocations of {size} bytes (defaults: {5 * pages})"
    )


def test_command_can_leave_the_allocator_alone(tmp_path):
    out = tmp_path / "r.json"
    argv = ["bench", "--shapes", "2x32x6x6:8", "--layouts", "nchw", "--activations", "none", "--modes", "fwd",
            "--rounds", "1", "--min-round-ms", "0.5", "--json", str(out), "--malloc", "default"]  # fmt: skip
    assert main(argv) == 0
    assert {r["malloc"] for r in json.loads(out.read_text())} == {"default"}


def test_crossover_tool_measures_both_routes():
    from groupnorm.bench import small_calls

    rows = small_calls.measure([1024], rounds=1)
    assert {(r["layout"], r["mode"]) for r in rows} == {
        (layout, mode) for layout in ("nchw", "channels_last") for mode in ("fwd", "fwd+bwd")
    }
    assert all(r["kernels_us"] > 0 and r["torch_us"] > 0 for r in rows)
    rows = small_calls.measure([1024], rounds=1, epilogue="relu+residual")
    assert len(rows) == 4 and {r["epilogue"] for r in rows} == {"relu+residual"}
    with pytest.raises(ValueError, match="epilogue must be one of"):
        small_calls.measure([1024], epilogue="silu")
    assert "GROUPNORM_CPU_SMALL_NUMEL" not in os.environ  # the tool restores the environment


def test_rounds_shuffle_the_order_and_give_every_provider_the_same_calls(monkeypatch):
    # a rotation kept the first provider always right after the copy that evicts the caches; and a provider
    # calibrated while cold got fewer calls per round, so more of each round's cold first call per call
    sequence: list[tuple[int, int]] = []
    ids: dict[int, int] = {}

    def per_call(self, fn, iters):
        sequence.append((ids.setdefault(id(fn), len(ids)), iters))
        return 1.0

    monkeypatch.setattr(harness.Clock, "per_call", per_call)
    speeds = iter([5, 50, 500])  # calls per round each runner would get alone: groupnorm, torch, copy
    monkeypatch.setattr(harness, "_calibrate", lambda clock, fn, min_round_s: next(speeds))
    case = harness.Case(TINY, "nchw", "float32", "none", False, "fwd")
    harness.run_case(case, ["groupnorm", "torch"], rounds=12, min_round_s=0.001)
    calls = {who: {n for w, n in sequence if w == who} for who in range(3)}
    assert calls[0] == calls[1] == {5} and calls[2] == {500}  # the copy keeps its own count
    order = [who for who, _ in sequence[3:]]  # after the warm-up round
    before_first = {order[i - 1] for i in range(1, len(order)) if order[i] == 0 and i % 3 != 0}
    assert len(before_first) == 2, before_first  # groupnorm follows torch in some rounds, the copy in others
