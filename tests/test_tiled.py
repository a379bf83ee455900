"""tiled_decode: a diffusers AutoencoderKL decoded tile by tile with whole-image GroupNorm statistics equals the
untiled decode, far more closely than diffusers' own tiled decode (tiles normalized with their own statistics,
attention per tile, overlaps blended)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import groupnorm

diffusers = pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return diffusers.AutoencoderKL(
        block_out_channels=(32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        sample_size=32,
    ).eval()


def _latent(dtype=torch.float32) -> torch.Tensor:
    # 20 x 24 latent pixels: not a multiple of the tile size, not square
    return torch.randn(1, 4, 20, 24, generator=torch.Generator().manual_seed(1), dtype=dtype)


def test_tiled_decode_matches_the_untiled_decode_far_better_than_diffusers_tiling(vae):
    z = _latent()
    with torch.no_grad():
        full = vae.decode(z).sample
        ours = groupnorm.tiled_decode(vae, z, tile_size=8)  # 3 x 3 tiles
        vae.enable_tiling()
        vae.tile_latent_min_size, vae.tile_sample_min_size = (
            8,
            16,
        )  # diffusers' tiles: 8 latent px, overlap 25 %
        try:
            theirs = vae.decode(z).sample
        finally:
            vae.disable_tiling()
    assert ours.shape == theirs.shape == full.shape == (1, 3, 40, 48)
    ours_error = (ours - full).abs().max().item()
    theirs_error = (theirs - full).abs().max().item()
    # measured (torch 2.14 CPU, diffusers 0.42): ours 2.5e-6, diffusers' tiled decode 0.93, output std 0.36
    assert ours_error < 2e-5, ours_error
    assert theirs_error > 1000 * ours_error, (ours_error, theirs_error)


def test_tiled_decode_is_exact_in_float64_for_any_tiling_and_its_gradient_too(vae):
    vae64 = vae.double()
    try:
        z = _latent(torch.float64).requires_grad_()
        full = vae64.decode(z).sample
        (grad_full,) = torch.autograd.grad(full.square().sum(), z)
        for tile_size in [(7, 5), 100]:  # uneven tiles; one tile
            ours = groupnorm.tiled_decode(vae64, z, tile_size=tile_size)
            # measured: 5e-15 (7 x 5 tiles)
            torch.testing.assert_close(ours, full, rtol=0, atol=1e-12)
        (grad_ours,) = torch.autograd.grad(groupnorm.tiled_decode(vae64, z, (7, 5)).square().sum(), z)
        torch.testing.assert_close(grad_ours, grad_full, rtol=1e-10, atol=1e-10)
        # the decoder alone (no post_quant_conv) is accepted too
        with torch.no_grad():
            quant = vae64.post_quant_conv(z)
            torch.testing.assert_close(
                groupnorm.tiled_decode(vae64.decoder, quant, 6), full, rtol=0, atol=1e-12
            )
    finally:
        vae.float()


def test_bad_arguments_name_the_value(vae):
    z = _latent()
    with pytest.raises(ValueError, match="tile_size must be a positive int or a .* got 0"):
        groupnorm.tiled_decode(vae, z, tile_size=0)
    with pytest.raises(
        ValueError,
        match=r"latents must be a Tensor of shape \(N, C, h, w\), got latents of shape \(4, 20, 24\)",
    ):
        groupnorm.tiled_decode(vae, z[0])
    with pytest.raises(TypeError, match="got Conv2d without conv_in"):
        groupnorm.tiled_decode(nn.Conv2d(4, 4, 3), z)
    original = vae.decoder.conv_out
    vae.decoder.conv_out = nn.Conv2d(32, 3, 3, stride=2, padding=1)
    try:
        with pytest.raises(TypeError, match=r"cannot run Conv2d tile by tile: .* stride=\(2, 2\)"):
            groupnorm.tiled_decode(vae, z)
    finally:
        vae.decoder.conv_out = original


def test_a_model_patched_by_groupnorm_patch_decodes_the_same(vae, implementation):
    # groupnorm.patch rewrites ResnetBlock2D.forward so that the norms compute the SiLU (norm.activation)
    patched = groupnorm.patch(copy.deepcopy(vae))
    z = _latent()
    with torch.no_grad():
        full = patched.decode(z).sample
        ours = groupnorm.tiled_decode(patched, z, tile_size=8)
    # every norm on the implementation (the plain ones too, which at this size would otherwise be torch's own)
    implementation.assert_implementation()
    # measured: 3.3e-6
    torch.testing.assert_close(ours, full, rtol=0, atol=2e-5)
    torch.testing.assert_close(full, vae.decode(z).sample, rtol=0, atol=2e-5)
