"""The committed pretrained tiny U-Net (checkpoints/tiny_sd/unet and scheduler/, fitted by
tools/pretrain_tiny_unet.py as a text-to-image model of SynthShapes scenes).

It loads like Stable Diffusion's U-Net, is the tiny config's architecture, is small, denoises held-out image
latents far better than a fresh U-Net, and reads the caption: with each scene's caption it denoises better
than with another scene's. Measured on these scenes: v-MSE at t=500 0.161 (a fresh U-Net: about 1.1); at
t=900 0.612 with the true captions, 0.648 with shifted ones.
"""
import importlib.util
import os.path as osp

import numpy as np
import pytest
import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_SD = osp.join(REPO_ROOT, 'checkpoints', 'tiny_sd')


@pytest.fixture(scope='module')
def tool():
    spec = importlib.util.spec_from_file_location('pretrain_tiny_unet', osp.join(REPO_ROOT, 'tools/pretrain_tiny_unet.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def scenes(tool):
    """32 held-out scenes (a stream the fit never drew), their latents, captions and fixed noise."""
    vae, text_encoder, unet_cfg, _ = tool.build_parts(TINY_SD)
    imgs, captions = tool.sample_scenes(np.random.default_rng([7, 9]), 32)
    noise = torch.randn((32, 16, 16, 16), generator=torch.Generator().manual_seed(0))
    return dict(latents=vae.encode(imgs), captions=captions, noise=noise, text=text_encoder,
                unet_cfg=unet_cfg)


@torch.no_grad()
def _loss(tool, unet, scheduler, scenes, captions, t):
    tokens = scenes['text'].encode_texts(captions)[1]
    timesteps = torch.full((len(captions), ), t)
    return tool.v_loss(unet, scheduler, scenes['latents'], tokens, timesteps, scenes['noise']).item()


def test_pretrained_unet_loads_like_sds_and_denoises_held_out_scenes(tool, scenes):
    from diffusers import DDPMScheduler, UNet2DConditionModel
    unet = UNet2DConditionModel.from_pretrained(TINY_SD, subfolder='unet').eval()
    scheduler = DDPMScheduler.from_pretrained(TINY_SD, subfolder='scheduler')
    assert osp.getsize(osp.join(TINY_SD, 'unet', 'diffusion_pytorch_model.safetensors')) < 8e6
    for key in ('in_channels', 'out_channels', 'block_out_channels', 'cross_attention_dim', 'attention_head_dim'):
        assert list(np.atleast_1d(unet.config[key])) == list(np.atleast_1d(scenes['unet_cfg'][key])), key
    assert unet.config.class_embed_type is None  # as SD's: DiGSeg adds the pooled-text embedding
    assert scheduler.config.prediction_type == 'v_prediction' and scheduler.config.rescale_betas_zero_snr

    torch.manual_seed(0)
    fresh = UNet2DConditionModel(**scenes['unet_cfg']).eval()
    assert _loss(tool, fresh, scheduler, scenes, scenes['captions'], 500) > 0.9
    assert _loss(tool, unet, scheduler, scenes, scenes['captions'], 500) < 0.25
    # the caption helps: each scene with the next scene's caption is denoised worse
    true = _loss(tool, unet, scheduler, scenes, scenes['captions'], 900)
    shifted = _loss(tool, unet, scheduler, scenes, scenes['captions'][1:] + scenes['captions'][:1], 900)
    assert shifted > 1.03 * true, (true, shifted)


def test_pretrained_config_starts_from_the_shipped_unet():
    """configs/digseg/digseg_tiny-pretrained_synth-shapes-64.py fine-tunes the committed U-Net with the paper
    configs' recipe: every weight but the widened conv_in is the shipped one, conv_in halves it per latent."""
    from diffusers import UNet2DConditionModel
    from mmengine.config import Config
    from mmseg.registry import MODELS
    import mmseg_digseg  # noqa: F401
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs/digseg/digseg_tiny-pretrained_synth-shapes-64.py'))
    assert cfg.model.train_cfg == dict(objective='denoising', num_positive=3, num_negative=1,
                                       timestep_range=(900, 1000))
    assert cfg.train_cfg.max_iters == cfg.param_scheduler[1].end == 1800
    model = MODELS.build(cfg.model)
    shipped = UNet2DConditionModel.from_pretrained(TINY_SD, subfolder='unet').state_dict()
    mine = model.decode_head.unet.state_dict()
    # the only new weights: the pooled-text path through the class embedding
    assert {n.split('.')[0] for n in set(mine) - set(shipped)} == {'class_embedding'}
    for name, weight in shipped.items():
        if name == 'conv_in.weight':  # [image latent, noisy mask latent]: the kernel halved over each
            torch.testing.assert_close(mine[name], torch.cat([weight, weight], 1) / 2)
        else:
            torch.testing.assert_close(mine[name], weight, msg=name)
