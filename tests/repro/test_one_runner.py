"""The three experiments on one runner and one config mechanism: committed results are still recognized, every
subcommand resolves, prints and helps the same way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from groupnorm.cli import main
from groupnorm.repro.checkpoint import load_checkpoint
from groupnorm.repro.detection.config import DetectionConfig
from groupnorm.repro.hparams import HParams
from groupnorm.repro.runner import is_finished, read_result
from groupnorm.repro.video.config import VideoConfig

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"
RUN_DIRS = sorted(p.parent for p in RESULTS.glob("**/runs/*/result.json"))


def _config_class(config: dict):
    return DetectionConfig if "variant" in config else VideoConfig if "frames" in config else HParams


def test_there_are_committed_runs_of_every_experiment():
    kinds = {_config_class(read_result(d)["config"]) for d in RUN_DIRS}
    assert kinds == {HParams, DetectionConfig, VideoConfig}


@pytest.mark.parametrize("run_dir", RUN_DIRS, ids=lambda p: f"{p.parents[1].name}/{p.name}")
def test_committed_run_keeps_its_id_and_is_finished(run_dir):
    result = read_result(run_dir)
    config = _config_class(result["config"]).from_dict(result["config"])
    assert config.run_id() == run_dir.name  # the folder a rerun of its command looks in
    assert is_finished(result, config.rounds)  # so the rerun skips it
    checkpoint = run_dir / "checkpoint.pt"
    if checkpoint.exists():  # and a resume would accept its checkpoint as this run's
        assert load_checkpoint(checkpoint)["hparams"] == config.to_dict()


def test_a_run_listed_twice_runs_once(tmp_path):
    from groupnorm.repro.runner import Job, run_jobs

    built = []

    class Done:
        def __init__(self, name, run_dir, **kw):
            built.append(name)
            self.run_dir = run_dir

        def run(self):
            result = {"run": self.run_dir.name, "config": {}, "rounds_done": 1}
            (self.run_dir / "result.json").write_text(json.dumps(result))
            return result

    jobs = [Job(rid, 1, lambda run_dir, name=name, **kw: Done(name, run_dir))
            for rid, name in (("a", "a"), ("b", "b"), ("a", "a again"))]  # fmt: skip
    results = run_jobs(jobs, tmp_path, fields=["run"], records="rounds.jsonl", meta={}, quiet=True)
    assert [r["run"] for r in results] == ["a", "b"] and len(built) == 2
    assert (tmp_path / "summary.csv").read_text().split() == ["run", "a", "b"]


def test_unfinished_results_are_not_finished():
    assert not is_finished(None, 3)
    assert not is_finished({"rounds_done": 2, "complete": False}, 3)
    assert not is_finished({"epochs_done": 9}, 10)


@pytest.mark.parametrize(
    "argv",
    [
        ["classification", "--preset", "demo"],
        ["--preset", "demo"],
        ["detection", "--preset", "detection-tiny", "--seeds", "2"],
        ["video", "--preset", "video-tiny", "--epochs", "3"],
    ],
)
def test_print_config_resolves_every_subcommand(argv, tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["repro", *argv, "--out", str(out), "--print-config"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["out"] == str(out) and shown["runs"] and not out.exists()
    if argv[0] == "detection":
        assert {c["seed"] for c in shown["configs"]} == {0, 1}  # a flag over the preset
    if argv[0] == "video":
        assert {c["epochs"] for c in shown["configs"]} == {3}


def test_plain_repro_is_classification(capsys):
    assert main(["repro", "--preset", "demo", "--print-config"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(["repro", "classification", "--preset", "demo", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out) == plain


@pytest.mark.parametrize(
    "argv,shown",
    [
        # without a preset: the defaults a bare command runs with
        (["classification"], ["(default 100)", "(default 8)", "(default 'resnet20')", "(default bn,gn)"]),
        (["classification", "--preset", "demo"], ["default 15, from --preset demo", "(default bn,gn,ln,in)"]),
        (["detection", "--preset", "detection-cpu"], ["default 1200, from --preset detection-cpu"]),
        (["video", "--preset", "video-tiny"], ["from --preset video-tiny"]),
        (["video"], ["default 'moving'", "(default 8x8)"]),
    ],
)
def test_help_shows_the_defaults_a_user_runs_with(argv, shown, capsys):
    with pytest.raises(SystemExit) as e:
        main(["repro", *argv, "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for piece in shown:
        assert piece in text, piece


def test_unknown_preset_is_named(capsys):
    with pytest.raises(SystemExit):
        main(["repro", "video", "--preset", "nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
