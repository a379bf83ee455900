"""``groupnorm.patch`` on tiny random diffusers models: every GN -> SiLU pair fused without torch.fx, same outputs
and gradients as the stock model, same state_dict, training flag kept."""

import copy
import importlib
import importlib.util
import pickle

import pytest
import torch
from torch import nn

import groupnorm
from groupnorm.patching import diffusers as diffusers_rules
from groupnorm.patching.pairs import back_to_back
from groupnorm.testing import assert_close_verbose

diffusers = pytest.importorskip("diffusers")
resnet = pytest.importorskip("diffusers.models.resnet")

TOL = dict(atol=2e-5, rtol=2e-5)


def _tiny_vae():
    return diffusers.AutoencoderKL(
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=8,
        latent_channels=4,
        layers_per_block=1,
    )


def _tiny_unet(time_embedding_norm):
    return diffusers.UNet2DModel(
        sample_size=16,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        layers_per_block=1,
        resnet_time_scale_shift=time_embedding_norm,
    )


def _tiny_conditional_unet():
    return diffusers.UNet2DConditionModel(
        sample_size=16,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=8,
        layers_per_block=1,
        cross_attention_dim=16,
        attention_head_dim=8,
    )


def _randomized(model):
    # Random affine parameters, so a norm whose weight/bias were skipped or swapped would show.
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(torch.randn_like(p) * 0.5 + (1.0 if name.endswith("weight") else 0.0))
    return model


def _eligible_pairs(model):
    """GN -> SiLU pairs counted from the stock structure: two per diffusers ResNet block whose nonlinearity is
    SiLU, one per conv_norm_out GroupNorm followed by a SiLU conv_act, one per GroupNorm, SiLU pair of adjacent
    Sequential children."""
    count = 0
    for m in model.modules():
        if isinstance(m, nn.Sequential):
            children = list(m)
            count += sum(
                isinstance(a, nn.GroupNorm) and isinstance(b, nn.SiLU) for a, b in zip(children, children[1:])
            )
        if type(m).__name__ in ("ResnetBlock2D", "TemporalResnetBlock") and isinstance(
            m.nonlinearity, nn.SiLU
        ):
            count += 2
        if isinstance(getattr(m, "conv_norm_out", None), nn.GroupNorm) and isinstance(
            getattr(m, "conv_act", None), nn.SiLU
        ):
            count += 1
    return count


def _patched_pair(make, train=False):
    stock = _randomized(make()).train(train)
    patched, report = groupnorm.patch(copy.deepcopy(stock), return_report=True)
    return stock, patched, report


def _check_structure(stock, patched, report):
    assert patched is not stock and not isinstance(patched, torch.fx.GraphModule)
    assert type(patched) is type(stock)
    fused_norms = {norm for norm, *_ in report.fused}
    assert len(report.fused) == len(fused_norms) == _eligible_pairs(stock)
    gn_paths = [p for p, m in stock.named_modules() if isinstance(m, nn.GroupNorm)]
    assert sorted(report.swapped) == sorted(gn_paths)
    left = dict(report.left)
    assert sorted(fused_norms | set(left)) == sorted(gn_paths)  # every GroupNorm: fused or left with a reason
    modules = dict(patched.named_modules())
    for path in gn_paths:
        assert isinstance(modules[path], groupnorm.GroupNorm), path
        assert modules[path].activation == ("silu" if path in fused_norms else None), path
    for path, reason in left.items():
        assert reason and ("attention" in reason or "transformer" in reason), (path, reason)
    before, after = stock.state_dict(), patched.state_dict()
    assert list(after) == list(before)
    for key, value in before.items():
        assert torch.equal(after[key], value) and after[key].dtype == value.dtype, key
    assert all(m.training == stock.training for m in patched.modules())


def _check_gradients(stock, patched, inputs_stock, inputs_patched, run):
    out_stock, out_patched = run(stock, *inputs_stock), run(patched, *inputs_patched)
    assert_close_verbose(out_patched, out_stock, **TOL, name="output")
    weights = torch.randn_like(out_stock)
    (out_stock * weights).sum().backward()
    (out_patched * weights).sum().backward()
    for a, b in zip(inputs_stock, inputs_patched):
        if a.requires_grad:
            assert_close_verbose(b.grad, a.grad, atol=1e-4, rtol=1e-4, name="input grad")
    stock_params = dict(stock.named_parameters())
    for name, p in patched.named_parameters():
        ref = stock_params[name].grad
        if ref is None:
            assert p.grad is None, name
        else:
            assert_close_verbose(p.grad, ref, atol=1e-4, rtol=1e-4, name=f"grad {name}")


def _leaf(*shape):
    x = torch.randn(*shape)
    return x.clone().requires_grad_(), x.clone().requires_grad_()


def test_autoencoder_kl_encode_and_decode_fused_and_equal():
    stock, patched, report = _patched_pair(_tiny_vae, train=True)
    _check_structure(stock, patched, report)
    assert {"encoder.conv_norm_out", "decoder.conv_norm_out"} <= {norm for norm, *_ in report.fused}
    assert isinstance(patched.encoder.conv_act, nn.Identity) and isinstance(
        patched.decoder.conv_act, nn.Identity
    )
    torch.manual_seed(1)
    image = _leaf(2, 3, 16, 16)
    _check_gradients(stock, patched, image[:1], image[1:], lambda m, x: m.encode(x).latent_dist.mean)
    latent = _leaf(2, 4, 8, 8)
    _check_gradients(stock, patched, latent[:1], latent[1:], lambda m, z: m.decode(z).sample)
    patched.eval()
    assert not any(m.training for m in patched.modules())


@pytest.mark.parametrize("time_embedding_norm", ["default", "scale_shift"])
def test_unet2d_fused_and_equal(time_embedding_norm):
    stock, patched, report = _patched_pair(lambda: _tiny_unet(time_embedding_norm), train=True)
    _check_structure(stock, patched, report)
    hows = {how for *_, how in report.fused}
    if time_embedding_norm == "scale_shift":
        assert "ResnetBlock2D, scale/shift in the epilogue" in hows
    else:
        assert hows == {"ResnetBlock2D", "UNet2DModel"}
    torch.manual_seed(2)
    sample = _leaf(2, 3, 16, 16)
    timesteps = torch.tensor([3, 700])
    _check_gradients(stock, patched, sample[:1], sample[1:], lambda m, x: m(x, timesteps).sample)


def test_unet2d_condition_fused_and_equal():
    stock, patched, report = _patched_pair(_tiny_conditional_unet, train=True)
    _check_structure(stock, patched, report)
    torch.manual_seed(3)
    sample, context = _leaf(2, 4, 16, 16), _leaf(2, 5, 16)
    _check_gradients(
        stock,
        patched,
        (sample[0], context[0]),
        (sample[1], context[1]),
        lambda m, x, c: m(x, torch.tensor([10, 500]), encoder_hidden_states=c).sample,
    )


def test_scale_shift_with_a_caller_supplied_spatial_embedding_falls_back_to_the_stock_arithmetic():
    # Without time_emb_proj the caller's temb is used as is; a spatial one cannot be the op's (N, C) scale/shift.
    block = resnet.ResnetBlock2D(
        in_channels=16, groups=4, temb_channels=None, time_embedding_norm="scale_shift"
    )
    _randomized(block)
    patched, report = groupnorm.patch(copy.deepcopy(block), return_report=True)
    assert len(report.fused) == 2
    x = torch.randn(2, 16, 6, 6)
    for temb in (torch.randn(2, 32, 1, 1), torch.randn(2, 32, 6, 6), torch.randn(1, 32, 1, 1)):
        assert_close_verbose(patched(x, temb), block(x, temb), **TOL, name=f"temb {tuple(temb.shape)}")


def test_patched_block_keeps_its_class_name_and_pickles():
    block = _randomized(resnet.ResnetBlock2D(in_channels=16, groups=4, temb_channels=8))
    stock = copy.deepcopy(block)
    patched = groupnorm.patch(block)
    assert isinstance(patched, type(stock)) and type(patched).__name__ == "ResnetBlock2D"
    assert repr(patched).splitlines()[0] == repr(stock).splitlines()[0]
    x, temb = torch.randn(2, 16, 4, 4), torch.randn(2, 8)
    for copied in (pickle.loads(pickle.dumps(patched)), copy.deepcopy(patched)):
        assert type(copied) is type(patched) and copied.norm1.activation == "silu"
        assert_close_verbose(copied(x, temb), stock(x, temb), **TOL, name="copied block")


def test_patching_twice_changes_nothing():
    patched = groupnorm.patch(_randomized(_tiny_vae()))
    state = {k: v.clone() for k, v in patched.state_dict().items()}
    again, report = groupnorm.patch(patched, return_report=True)
    assert again is patched and report.fused == [] and report.swapped == []
    assert str(report).startswith("patch: nothing to fuse, model unchanged")
    assert all(torch.equal(v, state[k]) for k, v in again.state_dict().items())


def test_a_forward_of_another_version_is_left_alone(monkeypatch):
    # A forward that reads a name the fused forward does not handle belongs to a diffusers version it was not
    # written for: the block keeps its own forward and the report says why.
    forward, names = diffusers_rules._BLOCKS["ResnetBlock2D"]
    monkeypatch.setitem(diffusers_rules._BLOCKS, "ResnetBlock2D", (forward, names - {"skip_time_act"}))
    block = resnet.ResnetBlock2D(in_channels=16, groups=4, temb_channels=8)
    patched, report = groupnorm.patch(block, trace=False, return_report=True)
    assert type(patched) is resnet.ResnetBlock2D and report.fused == []
    assert dict(report.left)["norm1"].endswith("reads skip_time_act, unknown to the fused forward")


def test_the_block_nonlinearity_is_fused_when_the_op_has_it():
    def make(act):
        return resnet.ResnetBlock2D(in_channels=16, groups=4, temb_channels=8, non_linearity=act)

    _, report = groupnorm.patch(make("mish"), trace=False, return_report=True)
    assert report.fused == [] and "Mish, which the op has no fused form of" in dict(report.left)["norm2"]
    stock = _randomized(make("gelu"))
    patched, report = groupnorm.patch(copy.deepcopy(stock), return_report=True)
    assert [name for _, _, name, _ in report.fused] == ["gelu", "gelu"]
    x, temb = torch.randn(2, 16, 4, 4), torch.randn(2, 8)
    assert_close_verbose(patched(x, temb), stock(x, temb), **TOL, name="gelu block")


@pytest.mark.parametrize("name", sorted(diffusers_rules.PAIR_RULES))
def test_output_norm_rules_hold_for_the_installed_source(name):
    names = (
        "diffusers.models.autoencoders.vae",
        "diffusers.models.autoencoders.autoencoder_kl_temporal_decoder",
    )
    modules = [diffusers] + [importlib.import_module(n) for n in names if importlib.util.find_spec(n)]
    cls = next((getattr(m, name) for m in modules if hasattr(m, name)), None)
    if cls is None:
        pytest.skip(f"{name} is not in this diffusers version")
    for rule in diffusers_rules.PAIR_RULES[name]:
        assert back_to_back(cls, rule) is None


def test_torch_compile_of_a_patched_block_matches_eager():
    block = _randomized(
        resnet.ResnetBlock2D(in_channels=16, groups=4, temb_channels=8, time_embedding_norm="scale_shift")
    ).eval()
    patched = groupnorm.patch(block)
    x, temb = torch.randn(2, 16, 4, 4), torch.randn(2, 8)
    compiled = torch.compile(patched, backend="eager", fullgraph=True)
    assert_close_verbose(compiled(x, temb), patched(x, temb), **TOL, name="compiled block")


def test_spatio_temporal_blocks_fused_and_equal():
    # SpatioTemporalResBlock = ResnetBlock2D on frames + TemporalResnetBlock on a permuted 5-D view;
    # TemporalConvLayer is GN -> SiLU Sequentials over (N, C, T, H, W).
    class Video(nn.Module):
        def __init__(self):
            super().__init__()
            self.res = resnet.SpatioTemporalResBlock(32, 32, temb_channels=8)
            self.conv = resnet.TemporalConvLayer(32, norm_num_groups=8)

        def forward(self, x, temb, indicator):
            return self.conv(self.res(x, temb, indicator), num_frames=indicator.shape[-1])

    stock = _randomized(Video()).train()
    with torch.no_grad():  # TemporalConvLayer zero-initializes its last conv; give it weights that show
        stock.conv.conv4[-1].weight.normal_(0, 0.1)
    patched, report = groupnorm.patch(copy.deepcopy(stock), return_report=True)
    assert type(patched.res.temporal_res_block).__name__ == "TemporalResnetBlock"
    expected = {
        f"res.{b}.{n}" for b in ("spatial_res_block", "temporal_res_block") for n in ("norm1", "norm2")
    }
    expected |= {f"conv.conv{i}.0" for i in range(1, 5)}
    assert {norm for norm, *_ in report.fused} == expected and report.left == []
    _check_structure(stock, patched, report)
    torch.manual_seed(4)
    frames, temb = _leaf(2 * 3, 32, 4, 4), _leaf(2 * 3, 8)
    indicator = torch.zeros(2, 3)
    _check_gradients(
        stock, patched, (frames[0], temb[0]), (frames[1], temb[1]), lambda m, x, t: m(x, t, indicator)
    )


def test_deprecated_scale_argument_warns_as_in_diffusers():
    block = resnet.ResnetBlock2D(in_channels=16, groups=4, temb_channels=8)
    stock = copy.deepcopy(block)
    patched = groupnorm.patch(block)
    x, temb = torch.randn(1, 16, 4, 4), torch.randn(1, 8)
    with pytest.warns(FutureWarning, match="`scale` argument is deprecated") as stock_warnings:
        stock(x, temb, scale=1.0)
    with pytest.warns(FutureWarning, match="`scale` argument is deprecated") as patched_warnings:
        assert_close_verbose(patched(x, temb, scale=1.0), stock(x, temb), **TOL)
    assert len(stock_warnings) == len(patched_warnings)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.bfloat16, 3e-2)])
def test_patched_block_keeps_the_dtype(dtype, tol):
    block = resnet.ResnetBlock2D(
        in_channels=16, out_channels=32, groups=4, temb_channels=8, time_embedding_norm="scale_shift"
    )
    stock = _randomized(block).to(dtype)
    patched, report = groupnorm.patch(copy.deepcopy(stock), return_report=True)
    assert len(report.fused) == 2 and all(p.dtype == dtype for p in patched.parameters())
    x, temb = torch.randn(2, 16, 5, 5, dtype=dtype), torch.randn(2, 8, dtype=dtype)
    out = patched(x, temb)
    assert out.dtype == dtype
    assert_close_verbose(out, stock(x, temb), atol=tol, rtol=tol, name=str(dtype))
