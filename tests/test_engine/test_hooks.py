"""The hooks inside a real mmengine Runner on the embedded default."""
import copy
import glob
import importlib.util
import json
import math
import os.path as osp
import sys

import pytest
from mmengine.runner import Runner

from ..conftest import REPO_ROOT


def make_runner(cfg, tmp_path, name, **model_overrides):
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = str(tmp_path / name)
    cfg.experiment_name = name
    cfg.train_cfg.max_iters = 2
    cfg.train_cfg.val_interval = 2
    cfg.train_dataloader.batch_size = 2
    cfg.default_hooks.checkpoint.interval = 100
    cfg.model.update(model_overrides)
    return Runner.from_cfg(cfg)


def test_vocabulary_of_the_wrong_size_is_rejected(tiny_cfg, tmp_path):
    runner = make_runner(tiny_cfg, tmp_path, 'vocab', class_names=['disc', 'ring'])
    with pytest.raises(ValueError, match='2 classes but the train dataset has 6'):
        runner.train()


def test_model_without_vocabulary_takes_the_datasets(tiny_cfg, tmp_path):
    runner = make_runner(tiny_cfg, tmp_path, 'vocab_default')
    runner.train()
    assert runner.model.class_names[:3] == ['background', 'disc', 'square']


def test_nan_loss_stops_training_with_the_iteration(tiny_cfg, tmp_path):
    nan = float('nan')
    runner = make_runner(tiny_cfg, tmp_path, 'nan')
    runner.model.data_preprocessor.mean.fill_(nan)  # NaN inputs -> NaN loss, through the real model
    with pytest.raises(FloatingPointError, match='at iteration 1'):
        runner.train()


def test_tta_needs_logits(tiny_cfg, tmp_path):
    cfg = copy.deepcopy(tiny_cfg)
    cfg.model.test_cfg.return_logits = False  # label maps only: nothing for TTA to average
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline  # what tools/test.py --tta does
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model
    cfg.work_dir = str(tmp_path / 'tta')
    runner = Runner.from_cfg(cfg)
    with pytest.raises(ValueError, match='return_logits=True'):
        runner.test()


def test_training_keeps_its_vocabulary_across_validation(tiny_cfg, tmp_path):
    """Validation with a held-out class (6 names) between training iterations (5 names): every training
    step uses the training vocabulary, validation the validation one."""
    cfg = copy.deepcopy(tiny_cfg)
    cfg.train_dataloader.dataset.metainfo = dict(classes=('background', 'disc', 'square', 'triangle', 'cross'))
    cfg.val_dataloader.dataset.indices = 1
    cfg.work_dir, cfg.experiment_name = str(tmp_path / 'heldout'), 'heldout'
    cfg.train_cfg.max_iters, cfg.train_cfg.val_interval = 4, 2
    cfg.train_dataloader.batch_size = 1
    cfg.default_hooks.checkpoint.interval = 100
    runner = Runner.from_cfg(cfg)
    seen = []
    model = runner.model
    train_loss, predict = model.loss, model.predict
    model.loss = lambda *a, **k: seen.append(('train', len(model.class_names))) or train_loss(*a, **k)
    model.predict = lambda *a, **k: seen.append(('val', len(model.class_names))) or predict(*a, **k)
    runner.train()
    assert ('val', 6) in seen and seen.index(('val', 6)) < len(seen) - 1  # validation between iterations
    assert {n for kind, n in seen if kind == 'train'} == {5}
    assert {n for kind, n in seen if kind == 'val'} == {6}


def test_inference_cost_is_logged_with_tta_views(tiny_cfg, tmp_path):
    from mmseg_digseg.engine.hooks import inference_cost
    cfg = copy.deepcopy(tiny_cfg)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.test_dataloader.dataset.indices = 1
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model
    cfg.model.module.test_cfg.update(ensemble_size=2, num_steps=2)
    cfg.work_dir = str(tmp_path / 'cost')
    runner = Runner.from_cfg(cfg)
    runner.test()
    views = math.prod(len(step) for step in cfg.tta_pipeline[-1]['transforms'])  # 2 flips
    model = runner.model.module
    assert inference_cost(model, views) == dict(unet=views * 6 * 2 * 2, decodes=views * 6, readouts=0, encodes=views)
    log = open(glob.glob(f'{cfg.work_dir}/*/*.log')[0]).read()
    assert f'{views} view(s), ensemble 2 x 2 step(s): {views * 24} U-Net passes and {views * 6} VAE decodes' in log
    model.test_cfg.update(topk_classes=2)  # pre-score of all 6 classes, then 2
    assert inference_cost(model) == dict(unet=2 * 2 * 2 + 6, decodes=2 + 6, readouts=0, encodes=1)
    model.test_cfg.update(mask_readout='learned')  # the readout replaces every decode
    assert inference_cost(model) == dict(unet=2 * 2 * 2 + 6, decodes=0, readouts=2 + 6, encodes=1)


def binary_cfg(tiny_cfg, work_dir):
    """The embedded default as a binary task (background / disc, the other shapes ignored), validated with
    BinarySegMetric's threshold search after iterations 1 and 2, tested at the searched threshold."""
    cfg = copy.deepcopy(tiny_cfg)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key] = copy.deepcopy(cfg[key])
        cfg[key].dataset.metainfo = dict(classes=('background', 'disc'))
    cfg.val_dataloader.dataset.indices = cfg.test_dataloader.dataset.indices = 2
    cfg.val_evaluator = dict(type='BinarySegMetric', search_threshold=True)
    cfg.test_evaluator = dict(type='BinarySegMetric', threshold='from_file')
    assert {'type': 'BinaryThresholdHook'} in cfg.custom_hooks  # every config has it (default_runtime)
    cfg.train_cfg.max_iters, cfg.train_cfg.val_interval = 2, 1
    cfg.train_dataloader.batch_size = 1
    # the best validation is the one with the lower threshold: iteration 1's with this seed (checked below)
    cfg.default_hooks.checkpoint.update(interval=1, save_best='threshold', rule='less')
    cfg.work_dir, cfg.experiment_name = str(work_dir), 'train'
    return cfg


def test_each_checkpoint_is_tested_at_the_threshold_searched_for_it(tiny_cfg, tmp_path, monkeypatch):
    """Two validations choose different thresholds; the threshold file's last search is iteration 2's (what
    every test used to read). best_*.pth (iteration 1) is tested at iteration 1's threshold (stored in its
    meta), iter_2.pth at iteration 2's (found in the file by name; it was saved before its validation). A
    threshold file without a search of the weights under test is refused, naming tools/test.py
    --search-threshold, which then searches them on the validation split."""
    cfg = binary_cfg(tiny_cfg, tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.train()
    searched = runner.message_hub.get_scalar('val/threshold').data[0].tolist()  # one per validation
    assert len(searched) == 2 and searched[0] < searched[1], searched  # the premise: they differ
    assert json.load(open(tmp_path / 'binary_threshold.json'))['threshold'] == pytest.approx(searched[1])

    runner.load_checkpoint(str(tmp_path / 'best_threshold_iter_1.pth'))
    assert runner.test()['threshold'] == pytest.approx(searched[0])
    runner.load_checkpoint(str(tmp_path / 'iter_2.pth'))
    assert runner.test()['threshold'] == pytest.approx(searched[1])

    elsewhere = tmp_path / 'elsewhere'
    [metric] = runner.test_evaluator.metrics
    metric.threshold_file = str(elsewhere / 'binary_threshold.json')
    with pytest.raises(ValueError, match='--search-threshold') as err:
        runner.test()
    assert f'{runner.experiment_name} iter 2' in str(err.value)
    spec = importlib.util.spec_from_file_location('test_tool', osp.join(REPO_ROOT, 'tools/test.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    cfg.dump(str(tmp_path / 'binary.py'))
    monkeypatch.setattr(sys, 'argv', ['test.py', str(tmp_path / 'binary.py'), str(tmp_path / 'iter_2.pth'),
                                      '--search-threshold', '--work-dir', str(elsewhere),
                                      '--cfg-options', 'experiment_name=search'])
    tool.main()  # the validation split, searched for iter_2.pth's weights, saved in elsewhere/
    assert runner.test()['threshold'] == pytest.approx(searched[1])
