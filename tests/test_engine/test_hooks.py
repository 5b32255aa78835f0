"""The hooks inside a real mmengine Runner on the embedded default."""
import copy
import glob
import math

import pytest
from mmengine.runner import Runner


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
