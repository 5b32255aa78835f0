"""The committed tiny VAE (checkpoints/tiny_sd/vae, fitted by tools/fit_tiny_vae.py).

It loads like the VAE of Stable Diffusion, is small, has a 4x16x16 latent at 64x64, and a binary
mask survives the VAE round trip (the property DiGSeg relies on to denoise masks in latent space).
"""
import os.path as osp

import numpy as np
import pytest
import torch

from mmseg_digseg.datasets.synth_shapes import render_sample

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_SD = osp.join(REPO_ROOT, 'checkpoints', 'tiny_sd')
WEIGHTS = osp.join(TINY_SD, 'vae', 'diffusion_pytorch_model.safetensors')


@pytest.fixture(scope='module')
def vae():
    from diffusers import AutoencoderKL
    model = AutoencoderKL.from_pretrained(TINY_SD, subfolder='vae')
    return model.eval()


def _foreground_masks(num, seed=1234):
    """``num`` foreground class masks (bool, 64x64) of fixed-seed SynthShapes images."""
    masks, i = [], 0
    while len(masks) < num:
        _, label = render_sample(np.random.default_rng([seed, i]))
        i += 1
        masks.extend(label == c for c in np.unique(label) if c != 0)
    return np.stack(masks[:num])


def _to_input(masks):
    """bool (N, H, W) -> (N, 3, H, W) float in {-1, 1}."""
    x = torch.from_numpy(masks.astype(np.float32)) * 2 - 1
    return x[:, None].expand(-1, 3, -1, -1).contiguous()


def test_weights_file_is_small():
    assert osp.isfile(WEIGHTS)
    assert osp.getsize(WEIGHTS) < 2 * 1024 * 1024
    assert osp.isfile(osp.join(TINY_SD, 'vae', 'config.json'))


def test_config_and_latent_shape(vae):
    assert vae.config.latent_channels == 4
    assert len(vae.config.block_out_channels) == 3  # downsampling factor 4
    # scaling_factor was fitted: latents * scaling_factor have about unit std
    assert vae.config.scaling_factor != 0.18215 and 0.05 < vae.config.scaling_factor < 20
    img, _ = render_sample(np.random.default_rng(0))
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        post = vae.encode(x).latent_dist
        out = vae.decode(post.mode()).sample
    assert post.mode().shape == (1, 4, 16, 16)
    assert out.shape == (1, 3, 64, 64)
    z = post.mean * vae.config.scaling_factor
    assert 0.2 < z.std().item() < 5
    # the posterior is narrow: a sampled latent is close to the mode
    assert post.std.max().item() < 0.25


def test_mask_roundtrip_iou(vae):
    masks = _foreground_masks(30)
    with torch.no_grad():
        z = vae.encode(_to_input(masks)).latent_dist.mode()
        pred = (vae.decode(z).sample.mean(dim=1) > 0).numpy()
    inter = (pred & masks).sum(axis=(1, 2))
    union = (pred | masks).sum(axis=(1, 2))
    ious = inter / union
    assert ious.mean() >= 0.9, ious
    assert np.median(ious) >= 0.9, ious


def test_mask_roundtrip_separates_masks(vae):
    """The round trip reproduces *this* mask, not a generic blob: IoU with another mask is low."""
    masks = _foreground_masks(10, seed=99)
    with torch.no_grad():
        z = vae.encode(_to_input(masks)).latent_dist.mode()
        pred = (vae.decode(z).sample.mean(dim=1) > 0).numpy()
    shifted = np.roll(masks, 1, axis=0)
    cross = (pred & shifted).sum(axis=(1, 2)) / np.maximum((pred | shifted).sum(axis=(1, 2)), 1)
    assert cross.mean() < 0.3
