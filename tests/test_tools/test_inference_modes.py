"""tools/test.py --tta and tools/infer.py in binary mode with the learned mask readout, and in palette mode.

The TTA runs go through tools/test.py unchanged (as a script, in this process), with the VAE decoder's and the
U-Net's forward counted, so the logged cost line is checked against what actually ran.
"""
import glob
import os.path as osp
import re

import numpy as np
import pytest
import torch
from PIL import Image

from mmseg_digseg.apis import init_digseg, segment
from ..conftest import REPO_ROOT, TINY_CONFIG
from ..test_apis.test_inference import run_infer
from .test_train_test import data_options, run_script

PALETTE_CONFIG = osp.join(REPO_ROOT, 'configs/digseg/digseg-palette_tiny_synth-shapes-64.py')
CLASSES = ('background', 'disc', 'square', 'triangle', 'cross', 'ring')
PROMPTS = ['disc', 'ring', 'background']
LEARNED = {'model.test_cfg.mask_readout': 'learned'}

# tools/test.py as its own __main__, with the forward passes of the VAE decoder and the U-Net counted


def save_checkpoint(config, path):
    """A checkpoint in mmengine's format, with dataset_meta (what tools/train.py writes)."""
    model = init_digseg(config)
    state_dict = model.state_dict()
    torch.save(dict(state_dict=state_dict, meta=dict(dataset_meta=dict(classes=CLASSES))), path)
    return state_dict


@pytest.fixture(scope='module')
def readout_checkpoint(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('ckpt') / 'tiny_readout.pth')
    state_dict = save_checkpoint(TINY_CONFIG, path)
    assert any(k.startswith('mask_readout.') for k in state_dict)  # the readout's weights travel with it
    return path


@pytest.fixture(scope='module')
def palette_checkpoint(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('ckpt') / 'tiny_palette.pth')
    state_dict = save_checkpoint(PALETTE_CONFIG, path)
    assert not any(k.startswith('mask_readout.') for k in state_dict)
    return path


@pytest.fixture(scope='module')
def image_path(synth_root):
    return sorted(glob.glob(osp.join(synth_root, 'img_dir/val/*.png')))[0]


def run_counted_tta(config, checkpoint, synth_root, work_dir, capsys, monkeypatch, *extra_options):
    """``python tools/test.py CONFIG CKPT --tta ...``, run in this process as a script (runpy), counting the
    forward calls of the VAE decoder and of the U-Net; what it printed and the two counts."""
    import sys
    from diffusers import AutoencoderKL, UNet2DConditionModel
    calls = dict(decoder=0, unet=0)
    for cls, key in ((sys.modules[AutoencoderKL.__module__].Decoder, 'decoder'), (UNet2DConditionModel, 'unet')):

        def counted(self, *args, _forward=cls.forward, _key=key, **kwargs):
            calls[_key] += 1
            return _forward(self, *args, **kwargs)

        monkeypatch.setattr(cls, 'forward', counted)
    options = data_options(synth_root, 2)  # ['--cfg-options', ...]: more options append to it
    out = run_script(capsys, monkeypatch, 'tools/test.py', config, checkpoint, '--tta', '--work-dir', work_dir,
                     *options, *extra_options)
    miou = float(re.search(r'mIoU: ([\d.]+)', out).group(1))
    assert 0 <= miou <= 100
    return out, calls['decoder'], calls['unet']


def test_tta_with_the_learned_readout_decodes_nothing(readout_checkpoint, synth_root, tmp_path, capsys, monkeypatch):
    out, decodes, unet = run_counted_tta(TINY_CONFIG, readout_checkpoint, synth_root, str(tmp_path), capsys,
                                         monkeypatch, 'model.test_cfg.mask_readout=learned')
    assert ('Test: 4 images, 6 classes, 2 view(s), ensemble 1 x 1 step(s): 12 U-Net passes and 0 VAE decodes '
            '(12 learned readouts) per image') in out
    assert decodes == 0  # the VAE decoder never ran
    # 4 images x 2 views, each one U-Net call for its 6 classes (class_chunk_size=16): the passes are batched
    assert unet == 4 * 2


def test_tta_in_palette_mode_decodes_once_per_view(palette_checkpoint, synth_root, tmp_path, capsys, monkeypatch):
    out, decodes, unet = run_counted_tta(PALETTE_CONFIG, palette_checkpoint, synth_root, str(tmp_path), capsys,
                                         monkeypatch)
    assert ('Test: 4 images, 6 classes, 2 view(s), ensemble 1 x 1 step(s): 2 U-Net passes and 2 VAE decodes '
            '(0 learned readouts) per image') in out
    assert decodes == 4 * 2 and unet == 4 * 2  # one of each per image and view, for all 6 classes


def test_segment_with_the_learned_readout_skips_the_decoder(readout_checkpoint, image_path):
    """The Python API with the learned readout (tools/infer.py --mask-readout learned: below)."""
    model = init_digseg(TINY_CONFIG, readout_checkpoint, cfg_options=LEARNED)
    assert model.test_cfg['mask_readout'] == 'learned'
    decoder_calls, readout_latents = [], []
    model.backbone.vae.decoder.register_forward_hook(lambda *_: decoder_calls.append(1))
    model.mask_readout.register_forward_hook(lambda module, args, output: readout_latents.append(args[0].shape[0]))
    result = segment(model, image_path, PROMPTS)
    assert result.seg_logits.data.shape == (3, 64, 64)
    assert result.pred_sem_seg.data.shape == (1, 64, 64)
    assert set(result.pred_sem_seg.data.unique().tolist()) <= {0, 1, 2}
    assert not decoder_calls
    assert sum(readout_latents) == 3  # one mask latent read per prompt

    # the scores are the readout's: the same model with the VAE decode gives others (random readout weights)
    model.test_cfg['mask_readout'] = 'vae'
    decoded = segment(model, image_path, PROMPTS)
    assert decoder_calls
    assert not torch.allclose(decoded.seg_logits.data, result.seg_logits.data, atol=1e-3)


@pytest.mark.parametrize('mode', ['palette', 'learned readout'])
def test_infer_tool_in_each_mode(mode, palette_checkpoint, readout_checkpoint, image_path, tmp_path, capsys):
    if mode == 'palette':
        args = ['--config', PALETTE_CONFIG, '--checkpoint', palette_checkpoint]
    else:
        args = ['--config', TINY_CONFIG, '--checkpoint', readout_checkpoint, '--mask-readout', 'learned']
    out = run_infer(capsys, image_path, *args, '--prompts', ','.join(PROMPTS), '--out-dir', str(tmp_path))
    assert 'Wrote' in out and 'and 3 score maps' in out
    overlay = np.asarray(Image.open(tmp_path / (osp.splitext(osp.basename(image_path))[0] + '_overlay.png')))
    assert overlay.ndim == 3 and overlay.shape[0] > 64
    maps = sorted(osp.basename(p) for p in glob.glob(str(tmp_path / '*_score_*.png')))
    assert [m.split('_score_')[1] for m in maps] == ['000_disc.png', '001_ring.png', '002_background.png']
    present = out.split('labels present: ')[1].splitlines()[0]
    assert set(re.findall(r"'([^']+)'", present)) <= set(PROMPTS)
