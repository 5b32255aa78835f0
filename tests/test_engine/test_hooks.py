"""The hooks inside a real mmengine Runner on the embedded default."""
import copy

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
