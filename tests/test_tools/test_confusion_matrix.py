"""ConfusionMatrixMetric and tools/analysis_tools/confusion_matrix.py (end to end on DiGSeg-tiny)."""
import json
import os.path as osp
import re
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from mmseg_digseg.evaluation.confusion_metric import (ConfusionMatrixMetric, confusion_counts, row_normalised,
                                                      scores_from_confusion)
from ..conftest import REPO_ROOT, TINY_CONFIG

CLASSES = ('background', 'disc', 'square', 'triangle', 'cross', 'ring')


def test_matrix_of_a_constructed_case_equals_the_hand_count():
    gt = torch.tensor([[0, 0, 1, 1],
                       [2, 2, 2, 255],
                       [1, 0, 7, 2]])  # 255 and 7 (outside 3 classes) are ignored
    pred = torch.tensor([[0, 1, 1, 1],
                         [2, 0, 2, 1],
                         [2, 0, 0, 2]])
    by_hand = np.array([
        # pred 0  1  2
        [2, 1, 0],  # gt 0: (0,0)->0, (0,1)->1, (2,1)->0
        [0, 2, 1],  # gt 1: (0,2)->1, (0,3)->1, (2,0)->2
        [1, 0, 3],  # gt 2: (1,0)->2, (1,1)->0, (1,2)->2, (2,3)->2
        [1, 1, 0],  # ignored: (1,3)->1, (2,2)->0
    ])
    np.testing.assert_array_equal(confusion_counts(pred, gt, 3, ignore_index=255), by_hand)
    scores = scores_from_confusion(by_hand)
    # IoU = tp / (gt + pred - tp): class 0: 2 / (3 + 3 - 2); class 1: 2 / (3 + 3 - 2); class 2: 3 / (4 + 4 - 3)
    np.testing.assert_allclose(scores['IoU'], [0.5, 0.5, 0.6])
    assert scores['mIoU'] == pytest.approx((0.5 + 0.5 + 0.6) / 3)
    assert scores['aAcc'] == pytest.approx(7 / 10)
    np.testing.assert_allclose(row_normalised(by_hand)[2], [25, 0, 75])

    # the metric, as the Runner drives it (data samples as dicts), sums over images; a class absent from
    # both ground truth and prediction is left out of mIoU (as MMSeg's IoUMetric)
    metric = ConfusionMatrixMetric(ignore_index=255)
    metric.dataset_meta = dict(classes=('a', 'b', 'c', 'd'))
    for _ in range(2):
        metric.process({}, [dict(gt_sem_seg=dict(data=gt[None]), pred_sem_seg=dict(data=pred[None]))])
    result = metric.evaluate(2)
    expected = np.concatenate([by_hand[:3], np.zeros((1, 3), int), by_hand[3:]]) * 2
    np.testing.assert_array_equal(metric.matrix[:, :3], expected)
    assert metric.matrix.shape == (5, 4) and not metric.matrix[:, 3].any()
    assert result['mIoU'] == pytest.approx(53.33, abs=0.01) and np.isnan(result['IoU.d'])
    assert result['aAcc'] == pytest.approx(70.0)


def test_agrees_with_mmseg_iou_metric():
    from mmseg.evaluation import IoUMetric
    rng = np.random.default_rng(0)
    gt = torch.from_numpy(rng.integers(0, 5, (2, 1, 20, 20)))
    gt[0, 0, :3] = 255
    pred = torch.from_numpy(rng.integers(0, 5, (2, 1, 20, 20)))
    samples = [dict(gt_sem_seg=dict(data=g), pred_sem_seg=dict(data=p)) for g, p in zip(gt, pred)]
    ours, theirs = ConfusionMatrixMetric(), IoUMetric(iou_metrics=['mIoU'])
    for metric in (ours, theirs):
        metric.dataset_meta = dict(classes=tuple('abcde'))
        metric.process({}, samples)
    a, b = ours.evaluate(2), theirs.evaluate(2)
    assert a['mIoU'] == pytest.approx(b['mIoU'], abs=0.01) and a['aAcc'] == pytest.approx(b['aAcc'], abs=0.01)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """A checkpoint in mmengine's format, with dataset_meta (what tools/train.py writes)."""
    from mmseg_digseg.apis import init_digseg
    model = init_digseg(TINY_CONFIG)
    path = str(tmp_path_factory.mktemp('ckpt') / 'tiny.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=dict(classes=CLASSES))), path)
    return path


def data_options(root):
    return ['--cfg-options', f'train_dataloader.dataset.data_root={root}',
            f'val_dataloader.dataset.data_root={root}', f'test_dataloader.dataset.data_root={root}']


def test_tool_end_to_end_on_the_tiny_model(checkpoint, synth_root, tmp_path, capsys):
    """The tool's main in this process (a fresh interpreter would spend most of the test importing torch)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('confusion_matrix_tool',
                                                  osp.join(REPO_ROOT, 'tools/analysis_tools/confusion_matrix.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out_dir = tmp_path / 'cm'
    capsys.readouterr()
    tool.main([TINY_CONFIG, checkpoint, '--out', str(out_dir), *data_options(synth_root)])
    out = capsys.readouterr().out
    assert '| ground truth \\ prediction | background | disc |' in out
    assert re.search(r'\| ring \| [\d.n/a]+ \| [\d.n/a]+ \|', out)  # per-class IoU table
    miou = float(re.search(r'val split, 4 images: mIoU ([\d.]+)', out).group(1))
    record = json.load(open(out_dir / 'confusion_matrix.json'))
    assert record['split'] == 'val' and record['num_images'] == 4 and record['classes'] == list(CLASSES)
    counts = np.array(record['counts'])
    assert counts.shape == (7, 6) and counts.sum() == 4 * 64 * 64  # every pixel of the 4 images, once
    assert record['mIoU'] == pytest.approx(miou, abs=0.01)
    png = Image.open(out_dir / 'confusion_matrix.png')
    assert png.size[0] > 200 and png.size[1] > 200


def test_train_split_uses_the_train_images_with_the_test_pipeline(synth_root, tmp_path):
    sys.path.insert(0, osp.join(REPO_ROOT, 'tools', 'analysis_tools'))
    try:
        import confusion_matrix as tool
    finally:
        sys.path.pop(0)
    from mmseg.registry import DATASETS
    args = tool.parse_args([TINY_CONFIG, 'x.pth', '--split', 'train', '--out', str(tmp_path),
                            *data_options(synth_root)])
    cfg = tool.build_cfg(args)
    ds_cfg = cfg.test_dataloader.dataset
    assert ds_cfg.data_prefix.img_path == 'img_dir/train'
    assert [t['type'] for t in ds_cfg.pipeline] == [t['type'] for t in cfg.test_pipeline]  # no RandomFlip
    assert cfg.test_dataloader.sampler == dict(type='DefaultSampler', shuffle=False)
    assert cfg.test_evaluator['type'] == 'ConfusionMatrixMetric' and cfg.test_evaluator['ignore_index'] == 255
    assert len(DATASETS.build(ds_cfg)) == 16  # the synth_root fixture's training images
