"""The GN–BN gap against training length, from two hand-written sweeps that differ in their epochs."""

from __future__ import annotations

import json

import pytest

from groupnorm.repro import training_length

pytest.importorskip("matplotlib")


def _sweep(path, epochs, errors):
    """A sweep directory whose runs end at the given final errors: {(label, b): error}."""
    path.mkdir(parents=True)
    lines = []
    for (norm, groups, b), err in errors.items():
        config = {"norm": norm, "groups": groups, "group_size": None, "batch_per_device": b, "seed": 0,
                  "epochs": epochs, "dataset": "cifar10", "devices": 4}  # fmt: skip
        run = f"{norm}{groups}_b{b}_e{epochs}"
        for e in range(1, epochs + 1):
            record = {
                "run": run,
                "epoch": e,
                "config": config,
                "val_error": err + (epochs - e),
                "train_error": 0,
            }
            lines.append(json.dumps(record))
    (path / "results.jsonl").write_text("\n".join(lines) + "\n")
    return path


def test_gaps_by_epochs_with_trend_table_and_plot(tmp_path):
    short = _sweep(
        tmp_path / "short", 2,
        {("bn", None, 32): 23.0, ("gn", 8, 32): 32.0, ("gn", 2, 32): 40.0, ("bn", None, 2): 30.0, ("gn", 8, 2): 31.0},
    )  # fmt: skip
    long = _sweep(tmp_path / "long", 4, {("bn", None, 32): 20.0, ("gn", 8, 32): 25.0, ("bn", None, 2): 28.0,
                                         ("gn", 8, 2): 25.0})  # fmt: skip
    rows = training_length.gaps([short, long])
    assert [r["epochs"] for r in rows] == [2, 4]
    # the ablation's G=2 run is not GN's cell; the last epoch's error is the run's result
    assert rows[0]["gn_32"] == 32.0 and rows[0]["gn_minus_bn_32"] == pytest.approx(9.0)
    assert rows[0]["bn_minus_gn_2"] == pytest.approx(-1.0) and rows[1]["bn_minus_gn_2"] == pytest.approx(3.0)
    # 9 -> 5 points over one doubling: -4 per doubling; 3 points at 2 ** ((3 - 13) / -4) = 5.66 epochs
    assert training_length.trend(rows, "gn_minus_bn_32") == pytest.approx((-4.0, 13.0))
    assert training_length.epochs_to_reach(rows, "gn_minus_bn_32", 3.0, below=True) == pytest.approx(2**2.5)
    assert (
        training_length.epochs_to_reach(rows, "bn_minus_gn_2", 10.0, below=True) is None
    )  # moves the other way
    path = training_length.write([short, long], tmp_path / "out")
    text = path.read_text()
    assert "| 2 | 23.00 | 32.00 | 9.00 | 30.00 | 31.00 | -1.00 |" in text
    assert "| 4 | 20.00 | 25.00 | 5.00 | 28.00 | 25.00 | 3.00 |" in text
    assert "reaches 3 points at about 6 epochs" in text
    assert (tmp_path / "out" / "gap_vs_epochs.png").stat().st_size > 1000


def test_a_sweep_without_results_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        training_length.main([str(tmp_path), "--out", str(tmp_path / "out")])
    assert "has no results.jsonl" in capsys.readouterr().err


def test_no_forecast_for_a_target_already_reached():
    rows = [{"epochs": 10, "gap": 2.5}, {"epochs": 20, "gap": 2.0}]
    assert training_length.epochs_to_reach(rows, "gap", 3.0, below=True) is None
