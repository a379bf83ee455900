"""The training-step profile: phases and operator kinds of a step, and the torch.nn.GroupNorm twin of a GN model."""

from __future__ import annotations

from torch import nn

from groupnorm import GroupNorm
from groupnorm.repro.hparams import HParams
from groupnorm.repro.step_profile import (
    PHASES,
    StepRunner,
    _torch_gn_model,
    profile_markdown,
    synthetic_cifar,
)


def test_torch_twin_has_the_same_grouping_and_parameters():
    hp = HParams(model="resnet8", norm="gn", group_size=4)
    data = synthetic_cifar(n=16)
    ours = StepRunner(hp, data).model
    twin = _torch_gn_model(hp, data)
    ours_gn = [(m.num_channels, m.num_groups) for m in ours.modules() if isinstance(m, nn.GroupNorm)]
    twin_gn = [(m.num_channels, m.num_groups) for m in twin.modules() if isinstance(m, nn.GroupNorm)]
    assert ours_gn == twin_gn and ours_gn[0] == (16, 4)
    assert not any(isinstance(m, GroupNorm) for m in twin.modules())
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in twin.parameters())


def test_a_step_is_split_into_phases_and_the_table_has_every_configuration():
    hp = HParams(model="resnet8", norm="gn", group_size=4, devices=2, batch_per_device=2, channels_last=True)
    data = synthetic_cifar(n=16)
    phases = StepRunner(hp, data).step()
    assert set(phases) == set(PHASES) and all(s > 0 for s in phases.values())
    md = profile_markdown({"gn b=2": hp, "bn b=2": HParams(model="resnet8", norm="bn", devices=2,
                                                           batch_per_device=2)}, rounds=1, gn_torch=True)  # fmt: skip
    for row in ("| gn b=2 |", "| bn b=2 |", "| gn b=2 torch.nn.GroupNorm |"):
        assert md.count(row) == 2  # the phase table and the operator-kind table
