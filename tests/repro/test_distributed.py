"""Two processes under torch.distributed (gloo, CPU) reproduce the single-process virtual-device emulation."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from groupnorm.repro.checkpoint import load_checkpoint
from groupnorm.repro.classification import ClassificationTrainer
from groupnorm.repro.hparams import HParams

from .conftest import synthetic_data

HP = HParams(dataset="synthetic", model="resnet8", width=0.5, norm="bn", devices=4, batch_per_device=3, epochs=2,
             base_lr=0.2, seed=7)  # fmt: skip


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = ClassificationTrainer(
            HP, synthetic_data(), os.path.join(out, "run"), log=lambda *a: None, device="cpu"
        ).run()
        with open(os.path.join(out, f"result{rank}.json"), "w") as f:
            json.dump(result, f)
        dist.barrier()  # no rank tears gloo down while another still uses it
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes: ~20 s on two busy cores
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
@pytest.mark.usefixtures("one_thread")
def test_two_processes_match_single_process_emulation(tmp_path):
    single = ClassificationTrainer(
        HP, synthetic_data(), tmp_path / "single" / "run", log=lambda *a: None, device="cpu"
    )
    single_result = single.run()

    out = tmp_path / "ddp"
    out.mkdir()
    mp.start_processes(_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, start_method="spawn")

    ddp_state = load_checkpoint(out / "run" / "checkpoint.pt")
    single_state = load_checkpoint(tmp_path / "single" / "run" / "checkpoint.pt")
    for a, b in zip(single_state["records"], ddp_state["records"]):
        assert a["epoch"] == b["epoch"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["train_error"] == pytest.approx(b["train_error"])
        assert a["val_error"] == pytest.approx(b["val_error"])
    assert len(ddp_state["records"]) == HP.epochs
    for key, value in single_state["model"].items():
        torch.testing.assert_close(ddp_state["model"][key], value, rtol=1e-4, atol=1e-5, msg=f"state {key}")
    assert any("running_mean" in k for k in single_state["model"])  # BN buffers were compared too
    r0, r1 = (json.loads((out / f"result{r}.json").read_text()) for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["val_error"] == r1["val_error"] == pytest.approx(single_result["val_error"])
    assert json.loads((out / "run" / "result.json").read_text())["world_size"] == 2
