"""``patch(model, process_group=...)``: the GroupNorms become DistributedGroupNorms and keep their fusions."""

import logging

import torch
import torch.distributed as dist
from torch import nn

import groupnorm


def test_patch_with_a_process_group_keeps_the_fused_activation(tmp_path, caplog):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        stock = nn.Sequential(nn.GroupNorm(4, 16), nn.SiLU(), nn.Conv2d(16, 8, 3))
        with caplog.at_level(logging.INFO, logger="groupnorm"):
            model, report = groupnorm.patch(
                nn.Sequential(nn.GroupNorm(4, 16), nn.SiLU(), nn.Conv2d(16, 8, 3)),
                process_group=dist.group.WORLD,
                return_report=True,
            )
        # one record, the patch report (the conversion to DistributedGroupNorm inside it logs nothing of its own)
        assert [r.getMessage() for r in caplog.records if r.name == "groupnorm"] == [str(report)]
        model.load_state_dict(stock.state_dict())
        assert isinstance(model[0], groupnorm.DistributedGroupNorm) and model[0].activation == "silu"
        assert len(report.fused) == 1
        x = torch.randn(2, 16, 9, 7)
        torch.testing.assert_close(model(x), stock(x))
    finally:
        dist.destroy_process_group()
