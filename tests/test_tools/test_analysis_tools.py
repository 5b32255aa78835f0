"""tools/analysis_tools: digseg_inference_memory.py (the real DiGSeg.predict with SD 2.1-base's parts on
fake tensors; run as a script: it patches diffusers' DDIM step and torch's norms for the count) and
train_step_profile.py (where a training step's time goes)."""
import json
import os.path as osp
import re

import numpy as np

from ..conftest import TINY_CONFIG
from .test_train_test import run_tool


def test_inference_memory_of_the_full_size_model():
    out = run_tool('tools/analysis_tools/digseg_inference_memory.py', '--vocab-sizes', '3', '40',
                   '--image-size', '256', '320', '--class-chunk-size', '10')
    rows = re.findall(r'\| (\d+) \| (full logits|labels only) \| (on|off) \| ([\d.]+) \| ([\d.]+) \|', out)
    peak = {(int(n), pred, slicing): float(p) for n, pred, slicing, _, p in rows}
    assert len(peak) == 8
    weights = {float(w) for *_, w, _ in rows}
    assert len(weights) == 1 and 3.4 < weights.pop() < 3.7  # SD 2.1-base VAE + U-Net in fp32 (+ tiny parts)
    for n in (3, 40):  # decoding a chunk one mask at a time lowers the peak
        assert peak[n, 'labels only', 'on'] < peak[n, 'labels only', 'off']
    # full logits grow with the vocabulary; labels only, with slicing, much less
    grow_full = peak[40, 'full logits', 'on'] - peak[3, 'full logits', 'on']
    grow_labels = peak[40, 'labels only', 'on'] - peak[3, 'labels only', 'on']
    assert grow_labels < grow_full


def test_train_step_profile_times_every_part(synth_root, tmp_path):
    """tools/analysis_tools/train_step_profile.py: each part of a step timed alone, the whole step, top ops."""
    out = run_tool('tools/analysis_tools/train_step_profile.py', TINY_CONFIG, '--batch-size', '2',
                   '--repeats', '1', '--top', '10', '--out', str(tmp_path),
                   '--cfg-options', f'train_dataloader.dataset.data_root={synth_root}')
    assert '2 images x classes = 12 (image, class) pairs at [64, 64]' in out
    with open(osp.join(tmp_path, 'train_step_profile.json')) as f:
        result = json.load(f)
    parts = result['parts']
    assert list(parts) == ['image_encode', 'mask_encode', 'unet', 'vae_decode', 'step']
    assert all(p['seconds'] > 0 and len(p['top']) == 10 for p in parts.values())
    # the U-Net pass runs attention; the frozen decoder's backward computes convolution gradients
    assert any('attention' in op['name'] for op in parts['unet']['top'])
    assert any('convolution' in op['name'] for op in parts['vae_decode']['top'])


def test_denoising_diagnosis_scores_every_noise_level_and_step_count(tiny_cfg):
    """tools/analysis_tools/denoising_diagnosis.py: one row per estimate, each scored by both readouts; the true
    mask latents read out by the VAE are the ceiling (near 100 on SynthShapes), a 0-step model far below it."""
    import importlib.util
    from mmseg.registry import MODELS
    from ..conftest import REPO_ROOT
    spec = importlib.util.spec_from_file_location(
        'denoising_diagnosis', osp.join(REPO_ROOT, 'tools/analysis_tools/denoising_diagnosis.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)  # puts tools/ on the path
    from benchmark_table4 import test_data
    assert tool.miou(np.array([[3, 1], [0, 4]])) == (3 / 4 + 4 / 5) / 2 * 100  # by hand
    model = MODELS.build(tiny_cfg.model).eval()
    model.class_names = ['background', 'disc', 'square', 'triangle', 'cross', 'ring']
    batches, _ = test_data(tiny_cfg, 1)
    results = tool.diagnose(model, batches, timesteps=(500, 999), steps=(1, 2))
    assert list(results) == ['true latent', 'noised t=500', 'noised t=999', 'sampled 1 step', 'sampled 2 steps']
    assert all(set(scores) == {'vae', 'learned'} for scores in results.values())
    assert results['true latent']['vae'] > 90
    assert results['sampled 1 step']['vae'] < 50  # an untrained U-Net
