"""The transfer experiments under torch.distributed (two gloo processes on CPU): video reproduces the
single-process emulation of its virtual devices; detection trains with every rank holding the same model."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from groupnorm.repro.checkpoint import load_checkpoint
from groupnorm.repro.video.clips import load_moving
from groupnorm.repro.video.config import VideoConfig
from groupnorm.repro.video.train import VideoTrainer

VIDEO = VideoConfig(dataset="moving:train=16,test=8,size=16", frames=4, norm="bn", width=0.5, gn_groups=4,
                    devices=2, clips_per_device=2, epochs=2, warmup_epochs=0.5, seed=3)  # fmt: skip
DETECTION = dict(dataset="scenes:objects=shapes,train=8,test=4,canvas=32,min_side=8,max_side=16", variant="gn_all",
                 devices=2, images_per_device=1, steps=2, steps_per_round=1, warmup_steps=1, fpn_channels=16,
                 box_head_width=32, mask_head_channels=16, rois_per_image=16, gn_groups=4)  # fmt: skip


def _video_data():
    return load_moving("train=16,test=8,size=16", frames=4)


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        video = VideoTrainer(
            VIDEO, _video_data(), os.path.join(out, "video"), log=lambda *a: None, device="cpu"
        ).run()
        from groupnorm.repro.detection.coco import load_detection_data
        from groupnorm.repro.detection.config import DetectionConfig
        from groupnorm.repro.detection.train import DetectionTrainer

        cfg = DetectionConfig(**DETECTION)
        trainer = DetectionTrainer(
            cfg, load_detection_data(cfg.dataset), os.path.join(out, "det"), device="cpu"
        )
        detection = trainer.run()
        torch.save(trainer.model.state_dict(), os.path.join(out, f"det_model{rank}.pt"))
        with open(os.path.join(out, f"result{rank}.json"), "w") as f:
            json.dump({"video": video, "detection": detection}, f)
        dist.barrier()  # no rank tears gloo down while another still uses it
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes: ~30 s on two busy cores
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
@pytest.mark.usefixtures("one_thread")
def test_two_processes_match_the_emulation_and_agree(tmp_path):
    pytest.importorskip("pycocotools")
    single = VideoTrainer(VIDEO, _video_data(), tmp_path / "single", log=lambda *a: None, device="cpu").run()
    out = tmp_path / "ddp"
    out.mkdir()
    mp.start_processes(_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, start_method="spawn")

    ddp_state = load_checkpoint(out / "video" / "checkpoint.pt")
    single_state = load_checkpoint(tmp_path / "single" / "checkpoint.pt")
    for a, b in zip(single_state["records"], ddp_state["records"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_error"] == pytest.approx(b["val_error"])
    for key, value in single_state["model"].items():  # BN running statistics included
        torch.testing.assert_close(ddp_state["model"][key], value, rtol=1e-4, atol=1e-5, msg=f"state {key}")
    r0, r1 = (json.loads((out / f"result{r}.json").read_text()) for r in (0, 1))
    assert r0["video"]["world_size"] == 2 and r0["video"]["val_error"] == pytest.approx(single["val_error"])
    assert r0["detection"]["complete"] and r0["detection"]["box_ap"] == r1["detection"]["box_ap"]
    m0, m1 = (torch.load(out / f"det_model{r}.pt", weights_only=True) for r in (0, 1))
    for key, value in m0.items():
        torch.testing.assert_close(m1[key], value, msg=f"detection state {key} differs between ranks")
