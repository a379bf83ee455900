"""Virtual devices: per-device BatchNorm equals BN run on each device's chunk by hand; syncbn is BN over the step."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from groupnorm.repro.devices import DeviceBatchNorm2d, device_bn


def _pair(c=6, b=3):
    torch.manual_seed(0)
    ours = DeviceBatchNorm2d(c, batch_per_device=b)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        ours.bias.uniform_(-1, 1)
        ours.running_mean.uniform_(-1, 1)
        ours.running_var.uniform_(0.5, 2)
    ref = nn.BatchNorm2d(c)
    ref.load_state_dict(ours.state_dict())
    return ours, ref


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("k,b", [(4, 3), (1, 5), (3, 1)], ids=["4 devices", "one device", "b=1 per device"])
def test_each_device_uses_its_own_statistics(k, b, channels_last):
    ours, ref = _pair(b=b)
    x = torch.randn(k * b, 6, 5, 7, dtype=torch.float64) * 3 + 2
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    ours, ref = ours.double(), ref.double()
    x1 = x.clone().requires_grad_()
    y = ours(x1)
    # by hand: a fresh BN replica per device, each on its chunk, running-stat updates averaged
    outs, means, vars_ = [], [], []
    x2 = x.clone().requires_grad_()
    for chunk in x2.split(b):
        replica = copy.deepcopy(ref)
        outs.append(replica(chunk))
        means.append(replica.running_mean)
        vars_.append(replica.running_var)
    y_ref = torch.cat(outs)
    torch.testing.assert_close(y, y_ref)
    assert y.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    torch.testing.assert_close(ours.running_mean, torch.stack(means).mean(0))
    torch.testing.assert_close(ours.running_var, torch.stack(vars_).mean(0))
    assert int(ours.num_batches_tracked) == 1
    g = torch.randn_like(y)
    (gx1,) = torch.autograd.grad(y, x1, g)
    (gx2,) = torch.autograd.grad(y_ref, x2, g)
    torch.testing.assert_close(gx1, gx2)


def test_parameter_gradients_sum_over_devices():
    ours, ref = _pair()
    ours, ref = ours.double(), ref.double()
    x = torch.randn(12, 6, 4, 4, dtype=torch.float64)
    ours(x).square().sum().backward()
    for chunk in x.split(3):
        ref(chunk).square().sum().backward()
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad)


def test_syncbn_is_plain_bn_over_the_whole_step():
    # syncbn is built as nn.BatchNorm2d over all K·b images; with one device of K·b it is the same module
    ours, ref = _pair(b=12)
    x = torch.randn(12, 6, 4, 4)
    torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours.running_var, ref.running_var)


def test_eval_mode_uses_running_statistics_and_bad_batch_is_an_error():
    ours, ref = _pair(b=4)
    ours.eval(), ref.eval()
    x = torch.randn(3, 6, 4, 4)  # not a multiple of b: fine in eval mode
    torch.testing.assert_close(ours(x), ref(x))
    ours.train()
    with pytest.raises(ValueError, match="batch_per_device=4"):
        ours(torch.randn(6, 6, 2, 2))


def test_factory_and_state_dict_match_batchnorm():
    m = device_bn(8)(16)
    assert isinstance(m, nn.BatchNorm2d) and m.batch_per_device == 8
    assert m.state_dict().keys() == nn.BatchNorm2d(16).state_dict().keys()
    assert "batch_per_device=8" in repr(m)


def test_syncbn_across_cpu_processes_is_refused_clearly(tmp_path, monkeypatch):
    from groupnorm.repro import runtime
    from groupnorm.repro.classification import ClassificationTrainer
    from groupnorm.repro.hparams import HParams

    from .conftest import synthetic_data

    monkeypatch.setattr(runtime.Dist, "current", staticmethod(lambda: runtime.Dist(rank=0, world=2)))
    monkeypatch.setattr(runtime.torch.cuda, "is_available", lambda: False)
    hp = HParams(norm="syncbn", devices=2, batch_per_device=4, model="resnet8")
    with pytest.raises(ValueError, match="syncbn.*needs CUDA.*--devices K"):
        ClassificationTrainer(hp, synthetic_data(), tmp_path)
