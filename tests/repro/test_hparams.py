"""The protocol: linear LR scaling, step and cosine schedules, validation, run ids, weight-decay groups."""

from __future__ import annotations

import pytest
import torch

from groupnorm.repro.classification import run_summary
from groupnorm.repro.hparams import HParams
from groupnorm.repro.runtime import epoch_order, param_groups


@pytest.mark.parametrize("b,lr", [(32, 0.1), (16, 0.05), (2, 0.00625), (64, 0.2)])
def test_lr_scales_linearly_with_images_per_device(b, lr):
    hp = HParams(batch_per_device=b, devices=8)
    assert hp.lr == pytest.approx(lr)  # the paper: 0.1 · b / 32, whatever the number of devices
    assert HParams(batch_per_device=b, devices=1).lr == pytest.approx(lr)


def test_step_schedule_divides_by_ten_at_30_60_90_percent():
    hp = HParams(batch_per_device=32, epochs=100)
    assert [hp.lr_at(e) for e in (0, 29.9, 30, 59, 60, 89.99, 90, 99)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001, 1e-4, 1e-4]
    )
    short = HParams(batch_per_device=32, epochs=10)
    assert [short.lr_at(e) for e in (2.9, 3, 6, 9)] == pytest.approx([0.1, 0.01, 0.001, 1e-4])


def test_cosine_schedule_and_warmup():
    hp = HParams(batch_per_device=32, epochs=10, schedule="cosine", warmup_epochs=1)
    assert hp.lr_at(0.5) == pytest.approx(0.05)
    assert hp.lr_at(1) == pytest.approx(0.1)  # the cosine starts at the peak where the warm-up ends
    assert hp.lr_at(5.5) == pytest.approx(0.05)  # halfway from the end of the warm-up to the last epoch
    assert hp.lr_at(10) == pytest.approx(0.0, abs=1e-12)
    assert all(hp.lr_at(e) >= hp.lr_at(e + 0.25) for e in (1, 2, 4.5, 9))  # no jump down after the warm-up


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"norm": "batchnorm"}, "norm: unknown value 'batchnorm'"),
        ({"schedule": "poly"}, "schedule: unknown value 'poly'"),
        ({"batch_per_device": 0}, "batch_per_device must be >= 1, got 0"),
        ({"groups": 32, "group_size": 16}, "groups=32, group_size=16"),
        ({"groups": 0}, "groups must be >= 1, got 0"),
        ({"width": 0}, "width must be > 0, got 0"),
    ],
)
def test_bad_hyper_parameters_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        HParams(**kw)


def test_round_trip_and_run_ids():
    hp = HParams(norm="gn", groups=16, batch_per_device=4, seed=2)
    assert HParams.from_dict(hp.to_dict()) == hp
    assert hp.to_dict()["lr"] == hp.lr
    assert hp.run_id().startswith("gn-G16_b4_k8_s2_")
    assert hp.run_id() != HParams(norm="gn", groups=16, batch_per_device=4, seed=2, epochs=5).run_id()


def test_epoch_order_depends_on_seed_and_epoch_only():
    assert torch.equal(epoch_order(50, 1, 3), epoch_order(50, 1, 3))
    assert not torch.equal(epoch_order(50, 1, 3), epoch_order(50, 1, 4))
    assert sorted(epoch_order(50, 0, 0).tolist()) == list(range(50))


def test_weight_decay_on_norm_params_can_be_turned_off():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GroupNorm(2, 4), torch.nn.BatchNorm2d(4))
    (all_params,) = param_groups(model, HParams())
    assert len(all_params["params"]) == 6 and all_params["weight_decay"] == 1e-4
    decay, no_decay = param_groups(model, HParams(decay_norm_params=False))
    assert len(decay["params"]) == 2 and len(no_decay["params"]) == 4 and no_decay["weight_decay"] == 0


def test_validation_error_is_median_of_the_last_five_percent_of_epochs():
    recs = [
        {"val_error": v, "train_error": 0.0, "train_loss": 1.0, "seconds": 1.0}
        for v in [50, 9, 1, 7, 3, 8, 2]
    ]
    assert run_summary(recs)["val_error"] == 2  # 7 epochs: the last one (5 % of the epochs, at least one)
    hundred = [{**recs[0], "val_error": float(v), "config": {"epochs": 100}} for v in range(100)]
    hundred[-5:] = [{**hundred[0], "val_error": v} for v in (1, 7, 3, 8, 2)]
    assert run_summary(hundred)["val_error"] == 3  # the paper's median of the last 5 of 100 epochs
