"""Never lose work: a sweep killed with SIGKILL resumes with no epoch missing or repeated; corrupt checkpoints
restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from groupnorm.cli import main
from groupnorm.repro.checkpoint import CorruptCheckpoint, load_checkpoint, save_checkpoint
from groupnorm.repro.hparams import HParams
from groupnorm.repro.runtime import read_jsonl
from groupnorm.repro.sweep import SweepSpec, run_sweep

from .conftest import synthetic_data

EPOCHS = 4


def _npz(tmp_path: Path) -> str:
    data = synthetic_data(n_train=40, n_test=16)
    path = tmp_path / "data.npz"
    np.savez(
        path,
        images=data.train_images.permute(0, 2, 3, 1).numpy(),
        labels=data.train_labels.numpy(),
        test_images=data.test_images.permute(0, 2, 3, 1).numpy(),
        test_labels=data.test_labels.numpy(),
    )
    return f"npz:{path}"


def _argv(dataset: str, out: Path) -> list[str]:
    return [
        "repro", "--dataset", dataset, "--model", "resnet8", "--width", "0.5", "--norms", "bn,gn",
        "--batch-per-device", "4", "--devices", "2", "--epochs", str(EPOCHS), "--out", str(out), "--quiet",
        "--no-report", "--run-on", "cpu",
    ]  # fmt: skip


def _spec(dataset: str) -> SweepSpec:
    base = HParams(dataset=dataset, model="resnet8", width=0.5, devices=2, epochs=EPOCHS)
    return SweepSpec(base=base, norms=["bn", "gn"], batch_per_device=[4])


def _env() -> dict:
    src = str(Path(__file__).resolve().parents[2] / "src")
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.mark.slow  # a subprocess started, killed and resumed: ~15 s
def test_sigkill_mid_sweep_resumes_without_missing_or_duplicated_epochs(tmp_path):
    dataset = _npz(tmp_path)
    reference = run_sweep(_spec(dataset), tmp_path / "ref", quiet=True, report=False, device="cpu")

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "groupnorm", *_argv(dataset, out)]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    # kill once the first run is past its first epoch but the sweep is not done
    while time.monotonic() < deadline and proc.poll() is None:
        if len(read_jsonl(out / "results.jsonl")) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the sweep finished before it could be killed: " + proc.stderr.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(read_jsonl(out / "results.jsonl"))
    assert done_before < 2 * EPOCHS

    resumed = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr

    records = read_jsonl(out / "results.jsonl")
    counts = Counter((r["run"], r["epoch"]) for r in records)
    assert all(c == 1 for c in counts.values()), "duplicated epochs"
    assert sorted(counts) == sorted((r["run"], e) for r in reference for e in range(1, EPOCHS + 1))
    # resuming from a checkpoint is exact: same data order and augmentation, same weights
    ref_records = {(r["run"], r["epoch"]): r for r in read_jsonl(tmp_path / "ref" / "results.jsonl")}
    for r in records:
        ref = ref_records[(r["run"], r["epoch"])]
        assert r["val_error"] == pytest.approx(ref["val_error"]), (r["run"], r["epoch"])
        assert r["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-4), (r["run"], r["epoch"])

    # a third time: everything is done, nothing is rerun or appended
    assert main(_argv(dataset, out)) == 0
    assert read_jsonl(out / "results.jsonl") == records


def test_corrupt_checkpoint_restarts_the_run_and_says_so(tmp_path, capsys):
    dataset = _npz(tmp_path)
    spec = _spec(dataset)
    spec.norms = ["gn"]
    first = run_sweep(spec, tmp_path / "out", quiet=True, report=False, device="cpu")
    run_dir = tmp_path / "out" / "runs" / first[0]["run"]
    (run_dir / "result.json").unlink()  # pretend it stopped before finishing
    ckpt = run_dir / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:-100])  # truncated
    capsys.readouterr()
    again = run_sweep(spec, tmp_path / "out", quiet=True, report=False, device="cpu")
    err = capsys.readouterr().err
    assert "restarting run" in err and "checksum" in err
    assert again[0]["val_error"] == pytest.approx(first[0]["val_error"])
    assert [r["epoch"] for r in read_jsonl(tmp_path / "out" / "results.jsonl")] == list(range(1, EPOCHS + 1))


def test_checkpoint_checksum_detects_damage(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"a": 1, "records": []})
    assert load_checkpoint(path)["a"] == 1
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptCheckpoint, match="checksum"):
        load_checkpoint(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CorruptCheckpoint, match="header"):
        load_checkpoint(path)
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


_CALLED: list[str] = []


def _mark_called(tag: str) -> str:
    _CALLED.append(tag)
    return tag


class _RunsCodeWhenUnpickled:
    """A payload whose unpickling calls a function: what a crafted checkpoint would do with ``os.system``."""

    def __reduce__(self):
        return (_mark_called, ("unpickled",))


def test_a_checkpoint_that_pickles_a_callable_is_refused_unrun(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(
        path, {"hparams": {}, "records": [], "payload": _RunsCodeWhenUnpickled()}
    )  # valid checksum
    _CALLED.clear()
    with pytest.raises(CorruptCheckpoint, match="cannot be read"):
        load_checkpoint(path)
    assert _CALLED == []  # refused before the callable ran
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "records": [{"epoch": 1, "loss": 0.5}]})
    assert load_checkpoint(path)["records"] == [{"epoch": 1, "loss": 0.5}]  # plain contents still load


def test_a_run_locked_by_another_process_is_skipped(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    dataset = _npz(tmp_path)
    spec = _spec(dataset)
    spec.base = replace(spec.base, epochs=1)
    locked = spec.runs()[0].run_id()
    run_dir = tmp_path / "out" / "runs" / locked
    run_dir.mkdir(parents=True)
    with open(run_dir / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a second worker on the sweep would
        results = run_sweep(spec, tmp_path / "out", quiet=True, report=False, device="cpu")
    assert [r["run"] for r in results] == [spec.runs()[1].run_id()]
    assert not (run_dir / "checkpoint.pt").exists()
    results = run_sweep(spec, tmp_path / "out", quiet=True, report=False, device="cpu")  # lock released
    assert len(results) == 2


def test_resume_run_restores_matching_state_and_restarts_on_other_hyper_parameters(tmp_path):
    from groupnorm.repro.checkpoint import resume_run, save_run

    def fresh():
        torch.manual_seed(1)
        model = torch.nn.Linear(3, 2)
        return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    model, opt = fresh()
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    records = [{"epoch": 1, "loss": 0.5}]
    torch.manual_seed(7)
    save_run(tmp_path, {"lr": 0.1}, model, opt, records, "rounds.jsonl", rng=True)
    expected_draw = torch.rand(3)
    assert read_jsonl(tmp_path / "rounds.jsonl") == records
    (tmp_path / ".rounds.jsonl.123.tmp").write_text("cut short by a kill")

    logs: list[str] = []
    other, other_opt = fresh()
    assert resume_run(tmp_path, {"lr": 0.2}, other, other_opt, main=True, log=logs.append) == []
    assert "belongs to other hyper-parameters" in logs[0] and "restarting run" in logs[0]
    assert not list(tmp_path.glob(".*.tmp"))  # the main process clears what a kill left

    again, again_opt = fresh()
    torch.manual_seed(123)
    assert (
        resume_run(tmp_path, {"lr": 0.1}, again, again_opt, main=True, log=logs.append, restore_rng=True)
        == records
    )
    assert torch.equal(again.weight, model.weight) and again_opt.state_dict()["state"].keys() == {0, 1}
    assert torch.equal(torch.rand(3), expected_draw)  # torch's generator continues where the run left it
