"""tools/analysis_tools: digseg_inference_memory.py (the real DiGSeg.predict with SD 2.1-base's parts on
fake tensors; run as a script: it patches diffusers' DDIM step and torch's norms for the count) and
train_step_profile.py (where a training step's time goes)."""
import json
import os.path as osp
import re

import numpy as np
import pytest
import torch

from ..conftest import TINY_CONFIG
from .test_train_test import run_tool


def test_inference_memory_of_the_full_size_model():
    # 20 classes in chunks of 10: the running argmax across chunks, at half the fake-tensor ops of 40
    out = run_tool('tools/analysis_tools/digseg_inference_memory.py', '--vocab-sizes', '3', '20',
                   '--image-size', '256', '320', '--class-chunk-size', '10')
    rows = re.findall(r'\| (\d+) \| (full logits|labels only) \| (on|off) \| ([\d.]+) \| ([\d.]+) \|', out)
    peak = {(int(n), pred, slicing): float(p) for n, pred, slicing, _, p in rows}
    assert len(peak) == 8
    weights = {float(w) for *_, w, _ in rows}
    assert len(weights) == 1 and 3.4 < weights.pop() < 3.7  # SD 2.1-base VAE + U-Net in fp32 (+ tiny parts)
    for n in (3, 20):  # decoding a chunk one mask at a time lowers the peak
        assert peak[n, 'labels only', 'on'] < peak[n, 'labels only', 'off']
    # full logits grow with the vocabulary; labels only, with slicing, much less
    grow_full = peak[20, 'full logits', 'on'] - peak[3, 'full logits', 'on']
    grow_labels = peak[20, 'labels only', 'on'] - peak[3, 'labels only', 'on']
    assert grow_labels < grow_full


def test_train_step_profile_times_every_part(synth_root, tmp_path, capsys):
    """tools/analysis_tools/train_step_profile.py (its main, in this process): each part of a step timed alone,
    the whole step, top ops."""
    _tool('train_step_profile').main([TINY_CONFIG, '--batch-size', '2', '--repeats', '1', '--top', '10', '--out',
                                      str(tmp_path), '--cfg-options', f'train_dataloader.dataset.data_root={synth_root}'])
    out = capsys.readouterr().out
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
    assert results['true latent']['vae']['mIoU'] > 90
    assert results['true latent']['vae']['present_iou'] > 90 and results['true latent']['vae']['absent_fires'] < 1
    assert results['sampled 1 step']['vae']['mIoU'] < 50  # an untrained U-Net


def test_binary_view_by_hand():
    """The binary view of one image: class 1 fills the left column, class 2 the right; 3 is absent."""
    tool = _tool('denoising_diagnosis')
    gt = torch.tensor([[1, 2], [1, 2], [0, 255]])
    scores = torch.zeros(4, 3, 2)
    scores[1] = 0.9  # class 1 fires everywhere: 2 of its 5 counted pixels are its own, 4 are objects
    scores[2, :2, 1] = 0.9  # class 2 exactly
    scores[3, 0, 0] = 0.9  # the absent class fires on 1 of 5 counted pixels
    sums = tool.binary_view(scores, gt, ignore_index=255)
    assert sums['pairs'] == 2 and sums['absent'] == 1
    assert abs(sums['present_iou'] - (2 / 5 + 1)) < 1e-6
    assert abs(sums['objects_iou'] - (4 / 5 + 2 / 4)) < 1e-6
    assert abs(sums['absent_fires'] - 1 / 5) < 1e-6


def test_vae_roundtrip_ceiling_takes_the_classes_of_the_generated_data(tmp_path):
    """tools/analysis_tools/vae_roundtrip_ceiling.py scores every class of the data: 49 for the many-class
    SynthShapes (its meta.json), where the old 6-class default silently ignored label ids 6-48."""
    from mmseg_digseg.datasets.synth_shapes import generate_synth_shapes
    tool = _tool('vae_roundtrip_ceiling')
    root = generate_synth_shapes(str(tmp_path / 'many'), num_train=2, num_val=2, seed=0, variant='many')
    classes = tool.dataset_classes(root)
    assert len(classes) == 49 and classes[:2] == ['background', 'solid disc']
    assert tool.dataset_classes(str(tmp_path)) == ['background', 'disc', 'square', 'triangle', 'cross', 'ring']


def _tool(name):
    import importlib.util
    from ..conftest import REPO_ROOT
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO_ROOT, f'tools/analysis_tools/{name}.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_text_separation_statistics_by_hand():
    tool = _tool('text_separation')
    stats = tool.pair_stats(torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]]))  # rows 0 and 1 point the same way
    assert abs(stats['mean'] - 1 / 3) < 1e-6 and abs(stats['max'] - 1) < 1e-6  # pairs: 1, 0, 0 (each twice)
    names = ['dotted disc', 'dotted square', 'striped disc', 'striped square']
    sim = torch.tensor([[1.0, 0.9, 0.2, 0.1], [0.9, 1.0, 0.3, 0.4], [0.2, 0.3, 1.0, 0.8], [0.1, 0.4, 0.8, 1.0]])
    groups = tool.word_groups(names, sim)
    assert abs(groups['same_last_word'] - (0.2 + 0.4) / 2) < 1e-6  # disc-disc, square-square
    assert abs(groups['same_other_words'] - (0.9 + 0.8) / 2) < 1e-6  # dotted-dotted, striped-striped
    assert abs(groups['neither'] - (0.1 + 0.3) / 2) < 1e-6


def test_text_separation_runs_the_configs_text_tower(tmp_path):
    from ..conftest import REPO_ROOT
    tool = _tool('text_separation')
    result = tool.main([f'{REPO_ROOT}/configs/digseg/digseg_tiny_synth-shapes-many-64.py', '--classes', 'dotted disc',
                        'dotted square', 'striped disc', '--top', '2', '--word-groups', '--out', str(tmp_path)])
    assert result['classes'] == ['dotted disc', 'dotted square', 'striped disc']
    assert -1 <= result['pooled']['mean'] <= result['pooled']['max'] <= 1
    assert set(result['nearest']) <= set(result['classes']) and len(result['nearest']) == 2
    assert json.load(open(tmp_path / 'text_separation.json'))['text_encoder'] == 'DiGSeg-Tiny-CLIP'
    # centred on the vocabulary: two classes become opposite vectors whatever the tower (c - m = -(d - m))
    two = tool.main([f'{REPO_ROOT}/configs/digseg/digseg_tiny_synth-shapes-many-64.py', '--classes', 'dotted disc',
                     'dotted square', '--centred'])
    assert two['centred'] and abs(two['pooled']['max'] + 1) < 1e-5 and abs(two['tokens']['mean'] + 1) < 1e-5
    with pytest.raises(ValueError, match='at least two'):
        tool.main([f'{REPO_ROOT}/configs/digseg/digseg_tiny_synth-shapes-many-64.py', '--classes', 'disc'])
