"""Confusion matrix between classes (ground truth vs prediction), per-class IoU and mIoU of a checkpoint.

    python tools/analysis_tools/confusion_matrix.py CONFIG CHECKPOINT [--split val|train] [--out DIR]
        [--cfg-options KEY=VALUE ...]

The model runs over the chosen split through mmengine's Runner test loop (the config's model, data
preprocessor and test-time settings), with the config's test pipeline: ``--split train`` evaluates the
training images without augmentation (under- vs over-fitting). The evaluator is
``ConfusionMatrixMetric`` (mmseg_digseg/evaluation/confusion_metric.py), which accumulates a
``(C + 1) x C`` matrix of pixel counts (rows: ground truth, the last row the ignored pixels; columns:
prediction). Printed: the matrix as a markdown table of row-normalised percentages, per-class IoU,
mIoU and aAcc (pooled over the split, as MMSeg's IoUMetric). Written under ``--out`` (default
``work_dirs/confusion_matrix/<config>_<split>``): ``confusion_matrix.json`` (counts, percentages,
scores) and ``confusion_matrix.png`` (heatmap).
"""
import argparse
import copy
import json
import os
import os.path as osp
import sys

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # the repo, for a checkout

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import mmseg_digseg  # noqa: E402,F401  (registers DiGSeg's modules)
from mmseg_digseg.evaluation.confusion_metric import (ConfusionMatrixMetric, row_normalised,  # noqa: E402
                                                      scores_from_confusion)

WRAPPERS = ('RepeatDataset', 'ClassBalancedDataset', 'MultiImageMixDataset')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Confusion matrix, per-class IoU and mIoU of a checkpoint')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file (.pth written by tools/train.py)')
    parser.add_argument('--split', choices=['val', 'train'], default='val',
                        help='which dataloader\'s images to evaluate (train: with the test pipeline)')
    parser.add_argument('--out', help='output directory (default work_dirs/confusion_matrix/<config>_<split>)')
    parser.add_argument('--ignore-index', type=int, help="default: the config's test_evaluator's, else 255")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    return parser.parse_args(argv)


def _test_pipeline(cfg):
    if cfg.get('test_pipeline') is not None:
        return copy.deepcopy(cfg.test_pipeline)
    return copy.deepcopy(cfg.val_dataloader.dataset.pipeline)


def _with_pipeline(dataset_cfg, pipeline):
    """The dataset config with every pipeline replaced by ``pipeline``; sampling wrappers removed."""
    dataset_cfg = copy.deepcopy(dataset_cfg)
    while dataset_cfg.get('type') in WRAPPERS:
        dataset_cfg = dataset_cfg['dataset']
    if 'datasets' in dataset_cfg:  # ConcatDataset
        dataset_cfg['datasets'] = [_with_pipeline(d, pipeline) for d in dataset_cfg['datasets']]
        dataset_cfg.pop('pipeline', None)
    else:
        dataset_cfg['pipeline'] = copy.deepcopy(pipeline)
    return dataset_cfg


def build_cfg(args):
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = 'none'
    cfg.load_from = args.checkpoint
    cfg.work_dir = args.out
    pipeline = _test_pipeline(cfg)
    source = cfg.val_dataloader if args.split == 'val' else cfg.train_dataloader
    cfg.test_dataloader = dict(
        batch_size=cfg.val_dataloader.get('batch_size', 1),
        num_workers=cfg.val_dataloader.get('num_workers', 0),
        persistent_workers=False,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=_with_pipeline(source.dataset, pipeline))
    ignore_index = args.ignore_index
    if ignore_index is None:
        evaluator = cfg.get('test_evaluator')
        ignore_index = evaluator.get('ignore_index', 255) if isinstance(evaluator, dict) else 255
    cfg.test_evaluator = dict(type='ConfusionMatrixMetric', ignore_index=ignore_index)
    cfg.test_cfg = dict(type='TestLoop')
    if 'visualization' in cfg.get('default_hooks', {}):
        cfg.default_hooks.visualization.draw = False
    return cfg


def markdown_confusion(matrix, classes):
    """Row-normalised percentages; rows ground truth (plus 'ignored' when it has pixels), columns prediction."""
    pct = row_normalised(matrix)
    names = list(classes) + ['(ignored)']
    lines = ['| ground truth \\ prediction | ' + ' | '.join(classes) + ' | pixels |',
             '|---|' + '---:|' * (len(classes) + 1)]
    for i, name in enumerate(names):
        if i == len(classes) and matrix[i].sum() == 0:
            continue
        cells = [f'**{v:.1f}**' if i == j else f'{v:.1f}' for j, v in enumerate(pct[i])]
        lines.append(f'| {name} | ' + ' | '.join(cells) + f' | {int(matrix[i].sum())} |')
    return '\n'.join(lines)


def markdown_scores(scores, classes):
    lines = ['| class | IoU | Acc |', '|---|---:|---:|']
    for name, iou, acc in zip(classes, scores['IoU'], scores['Acc']):
        lines.append(f'| {name} | {_pct(iou)} | {_pct(acc)} |')
    return '\n'.join(lines)


def _pct(value):
    return 'n/a' if not np.isfinite(value) else f'{value * 100:.2f}'


def _json_pct(value):
    """A fraction as a percentage for JSON (None where undefined: strict JSON has no NaN)."""
    return None if not np.isfinite(value) else round(float(value) * 100, 3)


def plot_heatmap(matrix, classes, path, title):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    num = len(classes)
    pct = row_normalised(matrix)[:num]
    side = min(20, max(4.5, 0.55 * num + 2.5))
    fig, ax = plt.subplots(figsize=(side + 1, side))
    im = ax.imshow(pct, cmap='Blues', vmin=0, vmax=100)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label='% of the ground-truth class pixels')
    ticks = np.arange(num)
    ax.set_xticks(ticks, labels=classes, rotation=45, ha='right', fontsize=8 if num > 12 else 10)
    ax.set_yticks(ticks, labels=classes, fontsize=8 if num > 12 else 10)
    ax.set_xlabel('prediction')
    ax.set_ylabel('ground truth')
    if num <= 30:
        for i in range(num):
            for j in range(num):
                ax.text(j, i, f'{pct[i, j]:.0f}', ha='center', va='center', fontsize=7 if num > 12 else 9,
                        color='white' if pct[i, j] > 60 else 'black')
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'Checkpoint "{args.checkpoint}" does not exist: pass the .pth written by '
                         f'tools/train.py (its work_dir has a file `last_checkpoint` naming the latest).')
    if args.out is None:
        args.out = osp.join('work_dirs', 'confusion_matrix',
                            f'{osp.splitext(osp.basename(args.config))[0]}_{args.split}')
    os.makedirs(args.out, exist_ok=True)
    cfg = build_cfg(args)
    runner = Runner.from_cfg(cfg)
    num_images = len(runner.test_dataloader.dataset)
    runner.logger.info(f'Confusion matrix on the {args.split} split: {num_images} images')
    runner.test()
    metric = next(m for m in runner.test_evaluator.metrics if isinstance(m, ConfusionMatrixMetric))
    matrix, classes = metric.matrix, metric.class_names
    scores = scores_from_confusion(matrix)

    summary = (f'{args.split} split, {metric.num_images} images: mIoU {_pct(scores["mIoU"])}, '
               f'mAcc {_pct(scores["mAcc"])}, aAcc {_pct(scores["aAcc"])}')
    print(f'\nConfusion matrix ({args.split} split; rows: ground truth, columns: prediction, '
          f'% of each row):\n')
    print(markdown_confusion(matrix, classes))
    print('\nPer-class IoU and accuracy (%):\n')
    print(markdown_scores(scores, classes))
    print(f'\n{summary}')

    record = dict(
        config=args.config, checkpoint=args.checkpoint, split=args.split, num_images=metric.num_images,
        ignore_index=metric.ignore_index, classes=classes,
        rows='ground truth (last row: ignored pixels)', columns='prediction',
        counts=matrix.tolist(), row_percent=np.round(row_normalised(matrix), 3).tolist(),
        IoU={c: _json_pct(v) for c, v in zip(classes, scores['IoU'])},
        Acc={c: _json_pct(v) for c, v in zip(classes, scores['Acc'])},
        mIoU=_json_pct(scores['mIoU']), mAcc=_json_pct(scores['mAcc']), aAcc=_json_pct(scores['aAcc']))
    json_path = osp.join(args.out, 'confusion_matrix.json')
    with open(json_path, 'w') as f:
        json.dump(record, f, indent=2)
    png_path = osp.join(args.out, 'confusion_matrix.png')
    plot_heatmap(matrix, classes, png_path,
                 f'{osp.basename(args.config)}\n{summary}')
    print(f'Wrote {json_path} and {png_path}')
    return record


if __name__ == '__main__':
    main()
