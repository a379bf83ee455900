"""Report generation from a small hand-written results file."""

from __future__ import annotations

import json

import pytest

from groupnorm.repro.report import findings, load_runs, write_report

pytest.importorskip("matplotlib")


def _records(norm, b, seed, errors, groups=None, epochs=None):
    epochs = epochs or len(errors)
    config = {
        "norm": norm, "batch_per_device": b, "devices": 4, "groups": groups, "group_size": None, "seed": seed,
        "dataset": "cifar10", "model": "resnet20", "epochs": epochs, "lr": 0.1 * b / 32, "base_lr": 0.1,
        "schedule": "step", "weight_decay": 1e-4, "width": 1, "train_subset": 1000, "grouping": "GroupNorm(...)",
    }  # fmt: skip
    run = f"{norm}{groups or ''}_b{b}_s{seed}"
    return [
        {"run": run, "epoch": i + 1, "config": config, "train_loss": 1.0, "train_error": e - 5, "val_error": e,
         "seconds": 2.0}
        for i, e in enumerate(errors)
    ]  # fmt: skip


def _write(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))


def test_report_tables_plots_and_findings(tmp_path):
    recs = []
    for seed, jitter in ((0, 0.0), (1, 1.0)):
        recs += _records("bn", 32, seed, [60, 50, 30, 30 + jitter, 31, 29, 30])
        recs += _records("bn", 2, seed, [70, 60, 45, 45, 45 + jitter, 45, 45])
        recs += _records("gn", 32, seed, [60, 50, 33, 33, 33, 33 + jitter, 33])
        recs += _records("gn", 2, seed, [60, 50, 33, 34, 34, 34 + jitter, 34])
    recs += _records("gn", 32, 0, [40, 36, 36, 36, 36], groups=8)
    recs += _records("ln", 32, 0, [40, 35], epochs=5)  # unfinished: left out of the tables
    _write(tmp_path / "results.jsonl", recs)
    path = write_report(tmp_path)
    text = path.read_text()
    assert path == tmp_path / "report.md"
    # BN at b=32 over seeds: 7 epochs are judged on the last one, 30 and 30 -> 30.00 ± 0.00; paper beside it
    assert "| BN | 30.00 ± 0.00 · paper 23.6 | 45.00 ± 0.00 · paper 34.7 |" in text
    assert "| GN | 33.00 ± 0.00 (+3.00) · paper 24.1 | 34.00 ± 0.00 (-11.00) · paper 24.1 |" in text
    assert "1 run(s) unfinished" in text and "| LN |" not in text
    assert "Group ablation" in text and "| GN G=8 | 32 | 36.00 | 24.4 |" in text
    assert "ours agrees" in text and "does NOT agree: GN is much worse" in text
    for png in ("fig1_error_vs_batch.png", "fig4_curves.png", "fig_groups.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_findings_say_plainly_when_bn_does_not_collapse():
    val = {("bn", 32): (10.0, None, 1), ("bn", 2): (10.2, None, 1), ("gn", 32): (11.0, None, 1),
           ("gn", 2): (11.1, None, 1)}  # fmt: skip
    text = " ".join(findings(val, [32, 2]))
    assert "does NOT reproduce this" in text  # BN barely moved
    assert "At b=2, GN − BN = +0.90 points (paper at b=2: -10.6); ours does NOT agree" in text


def test_findings_compare_only_the_cells_the_run_has_at_the_papers_batch_size():
    # a run at 8 images per device alone: one GN − BN line, against the paper at b=8, nothing about b=2 or b=32
    val = {("bn", 8): (10.0, None, 1), ("gn", 8): (10.5, None, 1)}
    lines = findings(val, [8])
    assert lines == ["At b=8, GN − BN = +0.50 points (paper at b=8: -0.8); ours agrees."]
    # a batch size the paper does not state: no comparison made up for it
    assert findings({("bn", 64): (10.0, None, 1), ("gn", 64): (12.0, None, 1)}, [64]) == [
        "This sweep has no cell that the paper's comparisons apply to."
    ]
    # GN+WS is reported beside BN at the run's ends
    val = {("bn", 32): (23.2, None, 1), ("gn+ws", 32): (25.8, None, 1)}
    assert findings(val, [32]) == [
        "At b=32, GN+WS − BN = +2.60 points (not in the paper, whose GN runs without Weight Standardization)."
    ]


def test_missing_results_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results file"):
        write_report(tmp_path)


def test_later_record_of_an_epoch_wins(tmp_path):
    recs = _records("gn", 4, 0, [50, 40])
    recs.append({**recs[-1], "val_error": 12.0})
    _write(tmp_path / "results.jsonl", recs)
    (run,) = load_runs(tmp_path / "results.jsonl")
    assert [r["val_error"] for r in run.records] == [50, 12.0]


def test_summary_is_the_error_table_and_the_comparison(tmp_path, capsys):
    from groupnorm.cli import main
    from groupnorm.repro.report import report_summary

    recs = _records("bn", 32, 0, [40, 30]) + _records("bn", 2, 0, [50, 45]) + _records("gn", 2, 0, [40, 35])
    _write(tmp_path / "results.jsonl", recs)
    summary = report_summary(write_report(tmp_path))
    assert summary.startswith("Test error (%) by images per device")  # cifar10 scored on its test split
    assert "| BN | 30.00 · paper 23.6 | 45.00 · paper 34.7 |" in summary and "Against the paper" in summary
    assert "Training error" not in summary and "![" not in summary
    assert main(["repro", "report", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith(summary)


def test_the_error_is_named_by_the_evaluation_set(tmp_path):
    recs = _records("bn", 32, 0, [40, 30])
    for r in recs:
        r["config"] = {**r["config"], "val_split": 5000}
    _write(tmp_path / "results.jsonl", recs)
    text = write_report(tmp_path).read_text()
    assert "## Validation error (%) by images per device" in text
    assert "on 5000 training images held out of training" in text and "Test error" not in text


def test_summary_tables_mark_planned_cells_pending(tmp_path):
    from groupnorm.repro.report import summary_tables

    recs = _records("bn", 32, 0, [40, 30]) + _records("gn", 32, 0, [45, 35]) + _records("gn", 32, 1, [45, 37])
    recs += _records("bn", 2, 0, [50, 45, 44])[:2]  # unfinished: 2 of 3 epochs
    recs[-1]["config"]["epochs"] = recs[-2]["config"]["epochs"] = 3
    _write(tmp_path / "results.jsonl", recs)
    sweep = {"norms": ["bn", "gn", "ln"], "batch_per_device": [32, 2], "batch_for_norm": {"ln": [32]}}
    (tmp_path / "meta.json").write_text(json.dumps({"sweep": sweep}))
    tables = summary_tables(tmp_path)
    assert (
        "| test error (%), cifar10, resnet20, 2 epochs, ± std over up to 2 seeds | 32 / device | 2 / device |"
        in tables
    )
    assert "| BN | 30.00 | pending |" in tables  # the b=2 run has not finished
    assert "| GN | 36.00 ± 1.41 | pending |" in tables
    assert (
        "| at 32 / device | BN | GN | LN |" in tables
        and "| test error (%) | 30.00 | 36.00 ± 1.41 | pending |" in tables
    )


def test_summary_tables_show_the_group_ablation_in_table_3s_order(tmp_path):
    from groupnorm.repro.report import summary_tables

    recs = _records("bn", 32, 0, [30]) + _records("bn", 2, 0, [45])
    recs += _records("gn", 32, 0, [33], groups=8) + _records("gn", 2, 0, [34], groups=8)  # the main grouping
    recs += _records("gn", 32, 0, [36], groups=2) + _records("gn", 32, 0, [32], groups=16)
    for size, err in ((16, 35), (4, 31)):
        extra = _records("gn", 32, 0, [err])
        extra[0]["config"] = {**extra[0]["config"], "group_size": size}
        extra[0]["run"] = f"gn{size}ch_b32_s0"
        recs += extra
    _write(tmp_path / "results.jsonl", recs)
    tables = summary_tables(tmp_path)
    assert "| GN G=8 | 33.00 | 34.00 |" in tables
    assert (
        "| GN at 32 / device, by group count | G=16 | G=8 | G=2 |\n|---|---|---|---|\n"
        "| test error (%) | 32.00 | 33.00 | 36.00 |\n| paper (ImageNet) | 24.6 | 24.4 | 24.7 |\n"
    ) in tables
    assert (
        "| GN at 32 / device, by channels per group | 4ch | 16ch |\n|---|---|---|\n"
        "| test error (%) | 31.00 | 35.00 |\n| paper (ImageNet) | 24.8 | 24.2 |\n"
    ) in tables
    no_ablation = tmp_path / "plain"
    no_ablation.mkdir()
    _write(no_ablation / "results.jsonl", recs[:4])
    assert "by group count" not in summary_tables(no_ablation)
