"""``groupnorm.patch`` fuses a residual block's end, ``act(norm(x) + shortcut)``, into one call of the norm with
``residual=``: in timm's and torchvision's ResNet blocks (in place) and in a traced graph (a new graph module),
with outputs and gradients unchanged and the caller's model still computing what it computed."""

import copy
import pickle
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import groupnorm
from groupnorm.layers import group_norm as group_norm_layer
from groupnorm.patching import resnets
from groupnorm.patching.graph import trace
from groupnorm.testing import randomize_norm_affine

TOL = dict(atol=1e-5, rtol=1e-4)


@pytest.fixture
def norm_calls(monkeypatch, implementation):
    """``(activation, residual given)`` for every call a groupnorm.GroupNorm makes of the functional op, each on
    the project's implementation (small CPU calls would otherwise be served by torch's group_norm)."""
    calls = []
    op = group_norm_layer.group_norm

    def recorded(*args, **kwargs):
        calls.append((kwargs.get("activation"), kwargs.get("residual") is not None))
        return op(*args, **kwargs)

    monkeypatch.setattr(group_norm_layer, "group_norm", recorded)
    return calls


def _close(actual, expected, name):
    # float32 rounding, which 50 layers of a ResNet-50 grow: relative to the largest value of the tensor
    atol = 1e-5 * max(1.0, expected.abs().max().item())
    torch.testing.assert_close(actual, expected, atol=atol, rtol=1e-4, msg=lambda m: f"{name}: {m}")


def _assert_computes_like(model, stock, x):
    """``model`` gives ``stock``'s output, input gradient and parameter gradients (by parameter name)."""
    for m in (model, stock):
        m.zero_grad(set_to_none=True)
    xm, xs = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, expected = model(xm), stock(xs)
    _close(out, expected, "output")
    out.square().sum().backward()
    expected.square().sum().backward()
    _close(xm.grad, xs.grad, "input gradient")
    stock_params = dict(stock.named_parameters())
    for name, p in model.named_parameters():
        _close(p.grad, stock_params[name].grad, f"gradient of {name}")


def _same_state(stock, patched):
    before, after = stock.state_dict(), patched.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], v) for k, v in before.items())


def _timm_resnet50():
    timm = pytest.importorskip("timm")
    return timm.create_model("resnet50_gn", pretrained=False), timm.models.resnet.Bottleneck


def _torchvision_resnet50():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet50(norm_layer=lambda c: nn.GroupNorm(32, c))
    return model, torchvision.models.resnet.Bottleneck


@pytest.mark.slow  # two ResNet-50 forward and backward passes a mode: 5-40 s on two busy cores
@pytest.mark.parametrize("build", [_timm_resnet50, _torchvision_resnet50], ids=["timm", "torchvision"])
def test_resnet50_fuses_every_norm_but_the_shortcuts(build, norm_calls):
    model, bottleneck = build()
    model = randomize_norm_affine(model)
    stock = copy.deepcopy(model)
    patched, report = groupnorm.patch(model, return_report=True)
    # In place: the caller's object is the model returned, with its class and its parameters.
    assert patched is model and type(model) is type(stock)
    assert (len(report.swapped), len(report.fused), len(report.left)) == (53, 49, 4)
    ends = [(norm, how) for norm, _, _, how in report.fused if how.endswith("residual add")]
    assert len(ends) == 16 and all(norm.endswith(".bn3") for norm, _ in ends)
    assert {name for _, _, name, _ in report.fused} == {"relu"}
    assert [path for path, _ in report.left] == [f"layer{i}.0.downsample.1" for i in range(1, 5)]
    assert all("the shortcut" in reason for _, reason in report.left)
    blocks = [m for m in model.modules() if isinstance(m, bottleneck)]
    assert len(blocks) == 16 and all(type(b).__name__ == "Bottleneck" for b in blocks)
    _same_state(stock, model)
    x = torch.randn(1, 3, 32, 32)  # small: layer4 works on 1x1 maps, the norms on 64 values a group
    for train in (False, True):
        model.train(train), stock.train(train)
        norm_calls.clear()
        _assert_computes_like(model, stock, x)
        # Each norm is one call; every block's end is one call with the ReLU and the shortcut.
        assert len(norm_calls) == 53 and norm_calls.count(("relu", True)) == 16
        assert norm_calls.count((None, False)) == 4


@pytest.mark.parametrize("library", ["timm", "torchvision"])
def test_basic_blocks_fuse_their_end_and_pickle(library, implementation):
    if library == "timm":
        timm = pytest.importorskip("timm")
        model = timm.create_model("resnet18", pretrained=False, norm_layer="groupnorm", num_classes=5)
        basic_block = timm.models.resnet.BasicBlock
    else:
        torchvision = pytest.importorskip("torchvision")
        model = torchvision.models.resnet18(num_classes=5, norm_layer=partial(nn.GroupNorm, 8))
        basic_block = torchvision.models.resnet.BasicBlock
    model = randomize_norm_affine(model).eval()
    stock = copy.deepcopy(model)
    patched, report = groupnorm.patch(model, return_report=True)
    assert patched is model and (len(report.swapped), len(report.fused), len(report.left)) == (20, 17, 3)
    assert sum(how == "BasicBlock, residual add" for *_, how in report.fused) == 8
    block = model.layer2[0]
    assert isinstance(block, basic_block) and block.bn2.activation == "relu"
    x = torch.randn(1, 3, 32, 32)
    _assert_computes_like(model, stock, x)
    with torch.no_grad():
        for copied in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
            assert type(copied.layer2[0]) is type(block) and type(copied.layer2[0].bn2) is type(block.bn2)
            _close(copied(x), stock(x), "output of a copy")
        # A graph of the patched model keeps each block end as one call of the norm, which still checks its residual.
        _close(trace(model)(x), stock(x), "output of a traced graph")


def test_graph_rewrite_alone_fuses_torchvision_block_ends(monkeypatch, implementation):
    torchvision = pytest.importorskip("torchvision")
    monkeypatch.setattr(
        resnets, "fuse_block", lambda *args: False
    )  # as for a block the rewrite does not know
    model = randomize_norm_affine(
        torchvision.models.resnet18(num_classes=5, norm_layer=partial(nn.GroupNorm, 8))
    ).eval()
    stock = copy.deepcopy(model)
    patched, report = groupnorm.patch(model, return_report=True)
    assert isinstance(patched, torch.fx.GraphModule)
    ends = [norm for norm, act, _, how in report.fused if how == "fx, residual add"]
    assert len(ends) == 8 and all(norm.endswith(".bn2") for norm in ends)
    assert dict(report.left) == {
        f"layer{i}.0.downsample.1": f"its output is the residual that layer{i}.0.bn2 adds in its call"
        for i in (2, 3, 4)
    }
    assert all(model.get_submodule(norm).activation is None for norm in ends)  # the caller's norms: unfused
    x = torch.randn(1, 3, 32, 32)
    _assert_computes_like(patched, stock, x)
    _assert_computes_like(model, stock, x)


def test_timm_block_with_drop_path_keeps_its_end():
    timm = pytest.importorskip("timm")
    model = timm.create_model("resnet18", pretrained=False, norm_layer="groupnorm", drop_path_rate=0.1)
    model = randomize_norm_affine(model).eval()
    stock = copy.deepcopy(model)
    patched, report = groupnorm.patch(model, return_report=True)
    # timm's drop-path rate grows from 0 in the first block (no DropPath there) to 0.1 in the last
    assert "runs drop_path=DropPath between bn2 and the add" in dict(report.left)["layer4.1.bn2"]
    assert [norm for norm, *_, how in report.fused if how.endswith("residual add")] == ["layer1.0.bn2"]
    _assert_computes_like(patched, stock, torch.randn(2, 3, 32, 32))


def test_block_whose_forward_differs_from_the_stock_one_is_left():
    torchvision = pytest.importorskip("torchvision")

    class BasicBlock(torchvision.models.resnet.BasicBlock):
        __module__ = "torchvision.models.resnet"  # torchvision's name and module, another forward

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + 2 * x)

    block = randomize_norm_affine(BasicBlock(16, 16, norm_layer=lambda c: nn.GroupNorm(4, c))).eval()
    stock = copy.deepcopy(block)
    patched, report = groupnorm.patch(block, trace=False, return_report=True)
    assert type(block) is BasicBlock and report.fused == []
    assert "differs from the one the fused forward copies" in dict(report.left)["bn2"]
    _assert_computes_like(patched, stock, torch.randn(2, 16, 8, 8))


class ConvResidual(nn.Module):
    """``act(gn(conv(x)) + x)``, the add and activation written as ``end`` says: only torch.fx sees the pattern."""

    def __init__(self, end):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.gn = nn.GroupNorm(4, 8)
        self.act = nn.SiLU()
        self.end = end

    def forward(self, x):
        return self.end(self, self.gn(self.conv(x)), x)


def _iadd_then_relu(m, h, x):
    h += x  # traced as +
    return F.relu(h)


ENDS = {
    "relu(h + x)": (lambda m, h, x: F.relu(h + x), "relu"),
    "relu(x + h)": (lambda m, h, x: torch.relu(x + h), "relu"),
    "h += x": (_iadd_then_relu, "relu"),
    "torch.add": (lambda m, h, x: F.gelu(torch.add(h, x)), "gelu"),
    "Tensor.add": (lambda m, h, x: h.add(x).relu(), "relu"),
    "Tensor.add_": (lambda m, h, x: m.act(h.add_(x)), "silu"),
}


@pytest.mark.parametrize("form", list(ENDS))
def test_graph_fuses_norm_add_activation(form, norm_calls):
    end, activation = ENDS[form]
    model = randomize_norm_affine(ConvResidual(end))
    stock = copy.deepcopy(model)
    patched, report = groupnorm.patch(model, return_report=True)
    assert isinstance(patched, torch.fx.GraphModule) and patched is not model
    assert [(norm, name, how) for norm, _, name, how in report.fused] == [
        ("gn", activation, "fx, residual add")
    ]
    assert report.left == []
    # The graph holds its own fused norm over the caller's parameters; the caller's norm is unchanged.
    assert patched.gn is not model.gn and patched.gn.weight is model.gn.weight
    assert model.gn.activation is None and patched.gn.activation == activation
    assert isinstance(patched.gn, groupnorm.GroupNorm) and type(patched.gn).__name__ == "GroupNorm"
    x = torch.randn(2, 8, 6, 6)
    for train in (True, False):
        for m in (patched, model, stock):
            m.train(train)
        norm_calls.clear()
        _assert_computes_like(patched, stock, x)
        assert norm_calls == [(activation, True)]  # norm, add and activation: one call
        _assert_computes_like(model, stock, x)
    again, second = groupnorm.patch(patched, return_report=True)
    assert again is patched and not second.changed


class Promoting(nn.Module):
    """``gelu(gn(x[:1]) + y)``: the sum broadcasts the norm's output up to ``y`` and takes ``y``'s dtype, which the
    op cannot do; the fused norm must add it the stock way."""

    def __init__(self):
        super().__init__()
        self.gn = nn.GroupNorm(4, 8)

    def forward(self, x, y):
        return F.gelu(self.gn(x[:1]) + y)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_graph_fused_norm_adds_any_residual_as_plus_would(dtype, norm_calls):
    model = randomize_norm_affine(Promoting())
    stock = copy.deepcopy(model)
    patched, report = groupnorm.patch(model, return_report=True)
    assert [how for *_, how in report.fused] == ["fx, residual add"]
    x = torch.randn(3, 8, 5, 5)
    y = torch.randn(3, 8, 5, 5, dtype=dtype, requires_grad=True)
    ys = y.detach().clone().requires_grad_()
    out, expected = patched(x, y), stock(x, ys)
    assert out.dtype == expected.dtype == dtype and out.shape == expected.shape
    torch.testing.assert_close(out, expected, **TOL)
    out.sum().backward(), expected.sum().backward()
    torch.testing.assert_close(y.grad, ys.grad)
    torch.testing.assert_close(patched.gn.weight.grad, stock.gn.weight.grad, **TOL)
    assert norm_calls == [(None, False)]  # the norm alone, its activation applied after the add
    assert patched.gn.activation == "gelu"  # set aside only for that call
    # A residual that fits (of the norm output's dtype, broadcast to its shape) takes the fused call.
    norm_calls.clear()
    small = torch.randn(1, 8, 1, 1)
    torch.testing.assert_close(patched(x, small), stock(x, small), **TOL)
    assert norm_calls == [("gelu", True)]


class NotFusable(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.GroupNorm(4, 8), nn.GroupNorm(4, 8), nn.GroupNorm(4, 8)

    def forward(self, x):
        h = (self.a(x) + x) * 2  # the sum goes to a multiply
        h = F.leaky_relu(self.b(h) + x)  # an activation the op cannot reproduce
        return F.relu(self.c(h) + 1.0)  # a constant, not a tensor of the graph


def test_graph_leaves_adds_it_cannot_fuse_with_the_reason():
    model = randomize_norm_affine(NotFusable())
    stock = copy.deepcopy(model)
    patched, report = groupnorm.patch(model, return_report=True)
    assert patched is model and report.fused == []
    left = dict(report.left)
    assert (
        "then to mul" in left["a"] and "then to leaky_relu" in left["b"] and "output goes to add" in left["c"]
    )
    _assert_computes_like(patched, stock, torch.randn(2, 8, 4, 4))
