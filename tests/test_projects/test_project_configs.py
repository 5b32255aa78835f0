"""Every config under projects/ builds, trains and predicts: the real Runner, tiny weights, the fixture
datasets converted by the projects' own converters.

As in tests/test_configs.py, the paper-scale weights are swapped for tiny ones of the same classes and
every pipeline, preprocessor and sliding-window size is divided by 8 (512-px crops and windows -> 64, 1024
tiles -> 128; 16 for the 2048x1024 driving and 1634-px REFUGE images); everything else (vocabularies, evaluators with threshold search, sliding-window inference,
cross-dataset test sets) runs as configured: two training iterations, validation, then the test split.
"""
import copy
import glob
import json
import math
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from ..conftest import REPO_ROOT, run_amp_on_cpu
from . import official_layouts as layouts
from .test_converters import deepglobe, monuseg, phenobench

PROJECT_CONFIGS = sorted(
    osp.relpath(p, REPO_ROOT) for p in glob.glob(osp.join(REPO_ROOT, 'projects/*/configs/*.py')))
SIZE_KEYS = ('crop_size', 'size', 'scale', 'stride')  # pipeline, preprocessor and slide-window sizes
CROSS_DATASET = {  # test config -> the config it evaluates the checkpoint of
    'projects/driving/configs/digseg_vitl_cityscapes-512x512_test-bdd100k.py':
    'projects/driving/configs/digseg_vitl_cityscapes-512x512.py',
    'projects/driving/configs/digseg_vitl_bdd100k-512x512_test-cityscapes.py':
    'projects/driving/configs/digseg_vitl_bdd100k-512x512.py',
}
BIOMEDCLIP_CONFIG = 'projects/medical/configs/digseg_vitl_monuseg-1000_biomedclip.py'
TRAIN_CONFIGS = [p for p in PROJECT_CONFIGS if p not in CROSS_DATASET and p != BIOMEDCLIP_CONFIG]


@pytest.fixture(scope='module')
def data_roots(tmp_path_factory):
    """Dataset roots keyed by dataset type: the official layouts, converted by the projects' converters."""
    root = tmp_path_factory.mktemp('project_data')
    layouts.deepglobe_release(str(root / 'deepglobe_release'), num_tiles=6)
    deepglobe.main([str(root / 'deepglobe_release'), '-o', str(root / 'deepglobe_road'), '--nproc', '1',
                    '--val-ratio', '0.2', '--test-ratio', '0.2'])
    layouts.monuseg_release(str(root / 'monuseg_release'), num_train=3, num_test=1)
    monuseg.main([str(root / 'monuseg_release'), '-o', str(root / 'monuseg'), '--num-val', '1'])
    layouts.phenobench_release(str(root / 'PhenoBench'), num=(2, 1, 0))
    phenobench.main([str(root / 'PhenoBench'), '-o', str(root / 'phenobench')])
    return {
        'DeepGlobeRoadDataset': str(root / 'deepglobe_road'),
        'MoNuSegDataset': str(root / 'monuseg'),
        'PhenoBenchDataset': str(root / 'phenobench'),
        'REFUGEDataset': layouts.refuge_converted(str(root / 'REFUGE')),
        'CityscapesDataset': layouts.cityscapes_converted(str(root / 'cityscapes')),
        'BDD100KDataset': layouts.bdd100k_release(str(root / 'bdd100k')),
    }


def _shrink(obj, factor):
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in SIZE_KEYS and value is not None:
                obj[key] = value // factor if isinstance(value, int) else type(value)(v // factor for v in value)
            else:
                _shrink(value, factor)
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            _shrink(item, factor)


def tiny_weights(model, tiny_sd_dir):
    """Swap the pretrained weights for tiny ones of the same classes (tests/test_configs.py's recipe)."""
    model.backbone.pretrained = model.decode_head.pretrained = tiny_sd_dir
    templates = model.text_encoder.get('templates', 'single')
    model.text_encoder = dict(type='OpenCLIPTextEncoder', model_name='DiGSeg-Tiny-CLIP', pretrained=None,
                              templates=templates)


def shrink_factor(path):
    """1/8 of the real sizes (1024 tiles -> 128, 512 windows -> 64); 1/16 where the test images are
    large (Cityscapes' 2048x1024, REFUGE's 1634): the same windows per image, each one cheaper."""
    return 16 if '/driving/' in path or 'refuge' in path else 8


def tiny_config(path, roots, tiny_sd_dir, work_dir):
    factor = shrink_factor(path)
    cfg = Config.fromfile(osp.join(REPO_ROOT, path))
    tiny_weights(cfg.model, tiny_sd_dir)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key] = copy.deepcopy(cfg[key])  # configs share pipeline lists between loaders: shrink each once
        _shrink(cfg[key], factor)
        loader = cfg[key]
        loader.num_workers, loader.persistent_workers = 0, False
        loader.dataset.data_root = roots[loader.dataset.type]
    _shrink(cfg.model.data_preprocessor, factor)
    _shrink(cfg.model.test_cfg, factor)
    cfg.val_dataloader.dataset.indices = cfg.test_dataloader.dataset.indices = 1  # one prediction each
    cfg.train_dataloader.batch_size = 2
    cfg.train_cfg.max_iters = cfg.train_cfg.val_interval = 2
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 2
    cfg.work_dir = str(work_dir)
    cfg.launcher = 'none'
    return cfg


def record_windows(model):
    """Sizes of the images the VAE encodes during prediction: one per sliding window."""
    sizes, encode = [], model.backbone.encode

    def wrapped(images, *args, **kwargs):
        if not model.training:
            sizes.append(tuple(images.shape[-2:]))
        return encode(images, *args, **kwargs)

    model.backbone.encode = wrapped
    return sizes


def test_every_project_has_readme_and_configs():
    for project in ('remote_sensing', 'medical', 'agriculture', 'driving'):
        readme = open(osp.join(REPO_ROOT, 'projects', project, 'README.md')).read()
        for section in ('## Data preparation', '## Training', '## Testing', '## Results', '## Checklist'):
            assert section in readme, (project, section)
    names = {osp.basename(p) for p in PROJECT_CONFIGS}
    assert {'digseg_vitl_deepglobe-road-1024.py', 'digseg_vitl_monuseg-1000.py', 'digseg_vitl_refuge-512.py',
            'digseg_vitl_phenobench-1024.py', 'digseg_vitl_cityscapes-512x512.py',
            'digseg_vitl_bdd100k-512x512.py'} <= names


@pytest.mark.parametrize('path', TRAIN_CONFIGS)
def test_project_config_trains_validates_and_tests(path, data_roots, tiny_sd_dir, tmp_path, monkeypatch):
    from mmengine.runner import Runner
    cfg = tiny_config(path, data_roots, tiny_sd_dir, tmp_path)
    run_amp_on_cpu(cfg, monkeypatch.setattr)  # bf16 autocast only where the CPU computes bf16 natively
    slide = cfg.model.test_cfg.get('mode') == 'slide'
    runner = Runner.from_cfg(cfg)
    model = runner.model
    windows = record_windows(model)

    runner.train()

    assert runner.iter == 2 and math.isfinite(runner.message_hub.get_scalar('train/loss').current())
    dataset = runner.val_dataloader.dataset
    assert len(model.class_names) == len(dataset.metainfo['classes'])
    binary = cfg.val_evaluator.type == 'BinarySegMetric'
    if binary:  # validation chose a threshold and saved it in the work dir
        record = json.load(open(osp.join(tmp_path, 'binary_threshold.json')))
        assert 0 < record['threshold'] < 1 and record['num_images'] == 1 and record['iter'] == 2
        # kept under the weights searched, and in the best checkpoint saved right after (BinaryThresholdHook)
        assert record['by_weights'][f'{runner.experiment_name} iter 2']['threshold'] == record['threshold']
        [best] = glob.glob(osp.join(tmp_path, 'best_*_iter_2.pth'))
        assert torch.load(best, weights_only=False)['meta']['binary_threshold']['threshold'] == record['threshold']
        for key in ('IoU', 'Precision', 'Recall', 'F1', 'mIoU', 'threshold', 'F1_default'):
            assert math.isfinite(runner.message_hub.get_scalar(f'val/{key}').current()), key
    else:
        assert 0 <= runner.message_hub.get_scalar('val/mIoU').current() <= 100
    if slide:  # every window is at most the configured (shrunk) crop, and there are several per image
        crop = tuple(cfg.model.test_cfg.crop_size)
        assert len(windows) > 1 and all(h <= crop[0] and w <= crop[1] for h, w in windows), windows

    if cfg.test_dataloader.dataset == cfg.val_dataloader.dataset:
        return  # the test split is the validation split (driving, PhenoBench): already predicted above
    metrics = runner.test()

    if binary:  # the test split reused the validation threshold
        assert metrics['threshold'] == pytest.approx(record['threshold']) and 'F1_default' not in metrics
        assert 0 <= metrics['IoU'] <= 100
    else:
        assert 'mIoU' in metrics


@pytest.mark.parametrize('path', sorted(CROSS_DATASET))
def test_cross_dataset_config_tests_the_other_dataset(path, data_roots, tiny_sd_dir, tmp_path):
    """Driving: the model trained on one dataset is tested on the other's validation set."""
    from mmengine.runner import Runner
    from mmseg.datasets import CityscapesDataset
    train_cfg = Config.fromfile(osp.join(REPO_ROOT, CROSS_DATASET[path]))
    cfg = tiny_config(path, data_roots, tiny_sd_dir, tmp_path)
    assert cfg.train_dataloader.dataset.type == train_cfg.train_dataloader.dataset.type
    assert cfg.test_dataloader.dataset.type != train_cfg.test_dataloader.dataset.type
    labels = []
    runner = Runner.from_cfg(cfg)
    metric = runner.test_evaluator.metrics[0]
    process = metric.process
    metric.process = lambda batch, samples: (labels.append(samples[0]['pred_sem_seg']['data']),
                                             process(batch, samples))
    metrics = runner.test()
    assert 'mIoU' in metrics and runner.model.class_names[0].startswith('road')
    # both datasets label the same 19 classes in the same order: the vocabulary fits either
    assert tuple(runner.test_dataloader.dataset.metainfo['classes']) == CityscapesDataset.METAINFO['classes']
    [pred] = labels
    assert pred.max() < 19


def test_biomedclip_variant_changes_only_the_text_encoder():
    base = Config.fromfile(osp.join(REPO_ROOT, 'projects/medical/configs/digseg_vitl_monuseg-1000.py'))
    cfg = Config.fromfile(osp.join(REPO_ROOT, BIOMEDCLIP_CONFIG))
    assert cfg.model.text_encoder.type == 'OpenCLIPTextEncoder'
    assert cfg.model.text_encoder.model_name == 'hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224'
    assert 'pretrained' in cfg.model.text_encoder
    for key in ('backbone', 'decode_head', 'test_cfg', 'train_cfg', 'class_names'):
        assert cfg.model[key] == base.model[key], key
    assert cfg.test_evaluator == base.test_evaluator and cfg.train_dataloader == base.train_dataloader

