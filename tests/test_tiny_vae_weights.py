"""The committed tiny VAE (checkpoints/tiny_sd/vae, fitted by tools/fit_tiny_vae.py).

It loads like the VAE of Stable Diffusion, is small (< 5 MB), has a downsampling factor of 4
(64x64 -> 16x16 latents) with a fitted ``scaling_factor``, keeps the images' textures (round-trip
PSNR) and lets a binary mask survive the round trip (the property DiGSeg relies on to denoise masks
in latent space). The quality bars sit a little below what tools/fit_tiny_vae.py measured on its
held-out scenes (image PSNR 23.3 dB, foreground-mask IoU 0.984) and on the scenes here.
"""
import os.path as osp

import numpy as np
import pytest
import torch

from mmseg_digseg.datasets.synth_shapes import render_sample

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_SD = osp.join(REPO_ROOT, 'checkpoints', 'tiny_sd')
WEIGHTS = osp.join(TINY_SD, 'vae', 'diffusion_pytorch_model.safetensors')

LATENT_CHANNELS = 16
MIN_IMAGE_PSNR = 23.5  # dB, mean over the test images (measured: 24.4)
MIN_MASK_IOU = 0.96  # mean over the test masks (measured: 0.977)


@pytest.fixture(scope='module')
def vae():
    from diffusers import AutoencoderKL
    model = AutoencoderKL.from_pretrained(TINY_SD, subfolder='vae')
    return model.float().eval()


def _scenes(num, seed):
    """``num`` fixed-seed SynthShapes scenes: (images uint8 (N, 64, 64, 3), labels (N, 64, 64))."""
    out = [render_sample(np.random.default_rng([seed, i])) for i in range(num)]
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])


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


@torch.no_grad()
def _roundtrip(vae, x):
    return vae.decode(vae.encode(x).latent_dist.mode()).sample


def test_weights_file_is_small():
    assert osp.isfile(WEIGHTS)
    assert osp.getsize(WEIGHTS) < 5 * 1024 * 1024
    assert osp.isfile(osp.join(TINY_SD, 'vae', 'config.json'))


def test_config_and_latent_shape(vae):
    assert vae.config.latent_channels == LATENT_CHANNELS
    assert len(vae.config.block_out_channels) == 3  # downsampling factor 4
    # scaling_factor was fitted: latents * scaling_factor have about unit std
    assert vae.config.scaling_factor != 0.18215 and 0.05 < vae.config.scaling_factor < 20
    img, _ = render_sample(np.random.default_rng(0))
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        post = vae.encode(x).latent_dist
        out = vae.decode(post.mode()).sample
    assert post.mode().shape == (1, LATENT_CHANNELS, 16, 16)
    assert out.shape == (1, 3, 64, 64)
    z = post.mean * vae.config.scaling_factor
    assert 0.2 < z.std().item() < 5
    # the posterior is narrow: a sampled latent is close to the mode
    assert post.std.max().item() < 0.25


def test_image_roundtrip_psnr(vae):
    """Textures survive: the round-tripped image is close to the original (uint8 PSNR)."""
    imgs, _ = _scenes(8, seed=4321)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1
    rec = ((_roundtrip(vae, x).clamp(-1, 1) + 1) * 127.5).round()
    mse = ((rec - torch.from_numpy(imgs).permute(0, 3, 1, 2).float())**2).mean(dim=(1, 2, 3))
    psnr = 10 * torch.log10(255.0**2 / mse)
    assert psnr.mean().item() >= MIN_IMAGE_PSNR, psnr


def test_mask_roundtrip_iou(vae):
    masks = _foreground_masks(30)
    pred = (_roundtrip(vae, _to_input(masks)).mean(dim=1) > 0).numpy()
    inter = (pred & masks).sum(axis=(1, 2))
    union = (pred | masks).sum(axis=(1, 2))
    ious = inter / union
    assert ious.mean() >= MIN_MASK_IOU, ious
    assert np.median(ious) >= MIN_MASK_IOU, ious


def test_mask_roundtrip_argmax_over_classes(vae):
    """All classes of a scene through the VAE, argmax of the decoded scores: the ground truth back."""
    _, labels = _scenes(4, seed=77)
    for label in labels:
        masks = np.stack([label == c for c in range(6)])
        score = _roundtrip(vae, _to_input(masks)).mean(dim=1)
        pred = score.argmax(dim=0).numpy()
        assert (pred == label).mean() >= 0.97


def test_mask_roundtrip_separates_masks(vae):
    """The round trip reproduces *this* mask, not a generic blob: IoU with another mask is low."""
    masks = _foreground_masks(10, seed=99)
    pred = (_roundtrip(vae, _to_input(masks)).mean(dim=1) > 0).numpy()
    shifted = np.roll(masks, 1, axis=0)
    cross = (pred & shifted).sum(axis=(1, 2)) / np.maximum((pred | shifted).sum(axis=(1, 2)), 1)
    assert cross.mean() < 0.3
