"""The paper config with the real architectures: SD 2.1-base's U-Net and VAE and the ViT-L/14 text tower.

Random weights, written in the real on-disk formats (a diffusers-layout directory whose config files and
scheduler file are SD 2.1-base's as published, tests/fixtures/sd21_base; an open_clip checkpoint file),
loaded through the same code path as the real weights. `configs/digseg/digseg_vitl_ade20k-512.py` then
runs one training step (one image, one class pair, crops cut to 128 px, three of ADE's classes), one prediction of two classes
with the VAE decode and one of three with the learned readout, in a subprocess so that its ~15 GB are returned to the system afterwards.
Tiny fixtures cannot catch what this does: defaults that only SD's own config files trigger (the scheduler
overrides), activations that only the OpenAI towers need (QuickGELU), shapes of the real U-Net.
"""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from .conftest import REPO_ROOT, SD21_FILES, write_sd21_scheduler

SMOKE_SCRIPT = r"""
import json, sys, time
import torch
from mmengine.config import Config
from mmengine.runner import Runner
import mmseg_digseg
from mmseg_digseg.apis import segment
from tests.conftest import run_amp_on_cpu
from tests.test_configs import _shrink

sd_dir, clip_file, data_root, image_path, work_dir = sys.argv[1:6]
cfg = Config.fromfile('configs/digseg/digseg_vitl_ade20k-512.py')
run_amp_on_cpu(cfg, setattr)  # bf16 AMP where the CPU computes bf16 natively, else fp32 (~100x faster there)
cfg.model.backbone.pretrained = cfg.model.decode_head.pretrained = sd_dir
cfg.model.text_encoder.pretrained = clip_file
cfg.model.train_cfg.update(num_positive=1, num_negative=0)  # one (image, class) pair
for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
    _shrink(cfg[key], 4)  # 512-px crops -> 128 (SD's U-Net: 16x16 latents, 2x2 at its bottom)
    cfg[key].dataset.data_root = data_root
    # three of ADE's classes (MMSeg's metainfo subset): ViT-L/14 encodes 3 names, not 150 (~20 s on 2 cores)
    cfg[key].dataset.metainfo = dict(classes=('wall', 'building', 'sky'))
    cfg[key].num_workers, cfg[key].persistent_workers = 0, False
_shrink(cfg.model.data_preprocessor, 4)
_shrink(cfg.test_pipeline, 4)  # what segment() reads: short side 512 -> 128, as the fixture image already is
cfg.train_dataloader.batch_size = 1
cfg.optim_wrapper.accumulative_counts = 1
cfg.train_cfg.max_iters = 1
cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None  # no validation of 150 classes
cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1, save_last=False)
cfg.default_hooks.logger.interval = 1
cfg.work_dir = work_dir
runner = Runner.from_cfg(cfg)
model = runner.model
head = model.decode_head
scheduler = head.inference_scheduler()
scheduler.set_timesteps(1)
report = dict(prediction_type=head.prediction_type, spacing=scheduler.config.timestep_spacing,
              one_step_timesteps=scheduler.timesteps.tolist(),
              final_alpha_bar=float(head.train_scheduler.alphas_cumprod[-1]),
              conv_in=list(head.unet.conv_in.weight.shape), cross_attention_dim=head.unet.config.cross_attention_dim,
              text_activation=type(model.text_encoder.clip.transformer.resblocks[0].mlp.gelu).__name__)
before = head.unet.conv_in.weight.detach().clone()
start = time.time()
runner.train()
report['train_step_s'] = round(time.time() - start, 1)
report['loss'] = runner.message_hub.get_scalar('train/loss').current()
report['loss_readout'] = runner.message_hub.get_scalar('train/loss_readout').current()
report['conv_in_changed'] = not torch.equal(before, head.unet.conv_in.weight.detach())
report['vocabulary'] = list(model.class_names)
state = model.state_dict()
report['checkpoint_keys_frozen'] = [k for k in state if k.startswith(('backbone.', 'text_encoder.'))][:3]
report['checkpoint_model_gb'] = sum(v.numel() * v.element_size() for v in state.values()) / 1e9
report['optimizer_state_gb'] = sum(v.numel() * v.element_size() for s in runner.optim_wrapper.optimizer.state.values()
                                   for v in s.values() if torch.is_tensor(v)) / 1e9
model.eval()
model.cfg = cfg  # what init_model sets; segment() reads the test pipeline from it
# the full VAE decode at SD's size, two classes
start = time.time()
decoded = segment(model, image_path, prompts=['wall', 'floor'])
report['predict_2_classes_vae_s'] = round(time.time() - start, 1)
report['vae_pred_shape'] = list(decoded.pred_sem_seg.data.shape)
report['vae_labels'] = sorted(decoded.pred_sem_seg.data.unique().tolist())
report['vae_logits_shape'] = list(decoded.seg_logits.data.shape)
report['vae_logits_finite'] = bool(torch.isfinite(decoded.seg_logits.data).all())
# the learned readout at SD's 8x factor: the input's size, no decoder pass
decodes = []
model.backbone.vae.decoder.register_forward_hook(lambda *args: decodes.append(1))
model.test_cfg['mask_readout'] = 'learned'
start = time.time()
result = segment(model, image_path, prompts=['wall', 'floor', 'ceiling'])
report['predict_3_classes_s'] = round(time.time() - start, 1)
report['pred_shape'] = list(result.pred_sem_seg.data.shape)
report['labels'] = sorted(result.pred_sem_seg.data.unique().tolist())
report['logits_shape'] = list(result.seg_logits.data.shape)
report['logits_finite'] = bool(torch.isfinite(result.seg_logits.data).all())
report['readout_factor'] = model.mask_readout.upsample_factor
report['readout_decodes'] = len(decodes)
print('REPORT', json.dumps(report))
"""


def _save_like_sd21(model, folder, config_name='config.json'):
    """Weights as diffusers writes them, config.json as SD 2.1-base published it."""
    model.save_pretrained(folder)
    shutil.copy(osp.join(SD21_FILES, osp.basename(folder), config_name), osp.join(folder, config_name))


@pytest.fixture(scope='module')
def sd21_dir(tmp_path_factory):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    root = tmp_path_factory.mktemp('sd21_base')
    torch.manual_seed(0)
    for cls, part in ((UNet2DConditionModel, 'unet'), (AutoencoderKL, 'vae')):
        with open(osp.join(SD21_FILES, part, 'config.json')) as f:
            model = cls.from_config(json.load(f))
        _save_like_sd21(model, str(root / part))
        del model
    write_sd21_scheduler(root)
    return str(root)


@pytest.fixture(scope='module')
def vitl_checkpoint(tmp_path_factory):
    """An open_clip ViT-L-14 checkpoint file (state dict, open_clip's format), random weights."""
    import open_clip
    torch.manual_seed(0)
    model = open_clip.create_model('ViT-L-14')
    path = str(tmp_path_factory.mktemp('vit_l14') / 'open_clip_pytorch_model.bin')
    torch.save(model.state_dict(), path)
    return path


def _ade_fixture(root):
    """One ADE20K training image at ADE's typical 512x683, shrunk like the crops (128x171)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (128, 171, 3), dtype=np.uint8)
    label = np.zeros((128, 171), np.uint8)
    label[20:100, 25:150] = 1  # wall (ADE's labels count from 1; 0 is ignored)
    label[50:90, 10:60] = 2  # building
    for split, name in (('training', 'ADE_train_00000001'), ('validation', 'ADE_val_00000001')):
        os.makedirs(f'{root}/images/{split}', exist_ok=True)
        os.makedirs(f'{root}/annotations/{split}', exist_ok=True)
        Image.fromarray(image).save(f'{root}/images/{split}/{name}.jpg')
        Image.fromarray(label).save(f'{root}/annotations/{split}/{name}.png')
    return f'{root}/images/validation/ADE_val_00000001.jpg'


def test_paper_config_with_the_real_architectures(sd21_dir, vitl_checkpoint, tmp_path):
    data_root = str(tmp_path / 'ADEChallengeData2016')
    image_path = _ade_fixture(data_root)
    env = dict(os.environ, PYTHONUNBUFFERED='1', HF_HUB_OFFLINE='1')
    proc = subprocess.run([sys.executable, '-c', SMOKE_SCRIPT, sd21_dir, vitl_checkpoint, data_root, image_path,
                           str(tmp_path / 'work')], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=1500)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and 'REPORT' in proc.stdout, out[-5000:]
    report = json.loads(proc.stdout.split('REPORT', 1)[1])
    print(report)  # pytest -s shows the measurements (times, checkpoint sizes)
    # the paper configs' objective on SD 2.1-base's own (PNDM) scheduler file with the config's overrides:
    # v-prediction, trailing, SD's betas rescaled to zero terminal SNR (docs/zoo.md)
    assert report['prediction_type'] == 'v_prediction' and report['spacing'] == 'trailing'
    assert report['one_step_timesteps'] == [999]
    assert report['final_alpha_bar'] < 1e-8
    assert report['conv_in'] == [320, 8, 3, 3] and report['cross_attention_dim'] == 1024
    assert report['text_activation'] == 'QuickGELU'  # OpenAI's ViT-L/14 weights need it
    assert np.isfinite(report['loss']) and report['conv_in_changed']
    assert report['vocabulary'] == ['wall', 'building', 'sky']  # the dataset's (subset of) classes
    assert report['checkpoint_keys_frozen'] == []  # the VAE and the text tower stay out of checkpoints
    assert 3.3 < report['checkpoint_model_gb'] < 3.7  # the U-Net (and text projection) in fp32
    assert report['pred_shape'] == [1, 128, 171] and report['logits_shape'] == [3, 128, 171]
    assert set(report['labels']) <= {0, 1, 2} and report['logits_finite']
    assert report['vae_pred_shape'] == [1, 128, 171] and report['vae_logits_shape'] == [2, 128, 171]
    assert set(report['vae_labels']) <= {0, 1} and report['vae_logits_finite']
    assert np.isfinite(report['loss_readout']) and report['loss_readout'] > 0  # the readout trained alongside
    assert report['readout_factor'] == 8 and report['readout_decodes'] == 0
