"""Weights load by path through a config, by the code path real Stable Diffusion / CLIP weights take."""
import copy

import torch
from diffusers import UNet2DConditionModel

from mmseg.registry import MODELS
from ..test_models.test_digseg import make_batch


def test_sd_directory_and_open_clip_checkpoint_through_a_config(tiny_cfg, tiny_sd_dir, tiny_clip_ckpt):
    cfg = copy.deepcopy(tiny_cfg.model)
    cfg.backbone.pretrained = tiny_sd_dir
    cfg.text_encoder.pretrained = tiny_clip_ckpt
    cfg.decode_head = dict(type='DiffusionMaskHead', pretrained=tiny_sd_dir,
                           scheduler_cfg=dict(prediction_type='v_prediction', rescale_betas_zero_snr=True,
                                              timestep_spacing='trailing'))
    cfg.class_names = ['background', 'disc', 'square', 'triangle', 'cross', 'ring']
    model = MODELS.build(cfg)
    saved = UNet2DConditionModel.from_pretrained(tiny_sd_dir, subfolder='unet')
    torch.testing.assert_close(model.decode_head.unet.conv_in.weight[:, :16], saved.conv_in.weight / 2)
    state = torch.load(tiny_clip_ckpt, map_location='cpu')
    torch.testing.assert_close(model.text_encoder.clip.token_embedding.weight, state['token_embedding.weight'])

    model.train()
    loss = sum(model.loss(*make_batch()).values())
    loss.backward()
    assert torch.isfinite(loss)
    model.eval()
    inputs, samples = make_batch(1)
    [result] = model.predict(inputs, None)
    assert result.seg_logits.data.shape == (6, 64, 64)
