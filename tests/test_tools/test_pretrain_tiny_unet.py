"""tools/pretrain_tiny_unet.py: its captions, and a short fit that lowers the held-out loss and saves a U-Net
from which DiGSeg's head starts exactly where the pretrained model stands.

The tool's ``main`` runs in this process (its command line through ``sys.argv``)."""
import ast
import importlib.util
import os.path as osp
import re
import sys

import torch
from mmengine.config import Config

from ..conftest import REPO_ROOT


def _tool():
    spec = importlib.util.spec_from_file_location('pretrain_tiny_unet', osp.join(REPO_ROOT, 'tools/pretrain_tiny_unet.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_captions_drop_only_the_background_every_scene_has():
    tool = _tool()
    assert tool.pretraining_caption('a dotted disc and two solid crosses on a smooth background') == \
        'a dotted disc and two solid crosses'
    assert tool.pretraining_caption('a smooth background') == 'a smooth background'  # an empty scene keeps it


def test_fit_lowers_the_held_out_loss_and_digseg_starts_from_the_saved_unet(tmp_path, monkeypatch, capsys):
    from diffusers import UNet2DConditionModel

    from mmseg_digseg.models.decode_heads import DiffusionMaskHead
    tool = _tool()
    monkeypatch.setattr(sys, 'argv', ['pretrain_tiny_unet.py', '--out', str(tmp_path), '--iters', '30',
                                      '--batch-size', '8', '--eval-every', '30', '--log-every', '30',
                                      '--threads', str(torch.get_num_threads())])
    tool.main()
    out = capsys.readouterr().out
    losses = [ast.literal_eval(d) for d in re.findall(r'held-out v-MSE at t=\(100, 500, 900\)[^{]*(\{.*\})', out)]
    assert len(losses) == 2  # untrained, after 30 iterations
    assert sum(losses[1].values()) < 0.85 * sum(losses[0].values()), losses

    # The head widens conv_in 16 -> 32 (kernel halved over [image, mask] latents), adds a zero-initialised
    # pooled-text embedding and passes the 64-wide tokens unchanged: with the same latent in both halves it
    # computes what the pretrained U-Net computes.
    scheduler_cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs/_base_/models/digseg_tiny.py')).model.decode_head.scheduler_cfg
    head = DiffusionMaskHead(pretrained=str(tmp_path), scheduler_cfg=scheduler_cfg, latent_channels=16,
                             text_token_dim=64, text_embed_dim=64).eval()
    unet = UNet2DConditionModel.from_pretrained(str(tmp_path), subfolder='unet').eval()
    assert head.train_scheduler.config.prediction_type == 'v_prediction'
    latents, tokens, pooled = torch.randn(2, 16, 16, 16), torch.randn(2, 16, 64), torch.randn(2, 64)
    t = torch.tensor([999, 400])
    with torch.no_grad():
        torch.testing.assert_close(head(latents, latents, t, tokens, pooled),
                                   unet(latents, t, encoder_hidden_states=tokens).sample, atol=1e-5, rtol=1e-4)
