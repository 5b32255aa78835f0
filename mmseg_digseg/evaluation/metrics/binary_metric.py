"""Binary segmentation metric (foreground IoU, precision, recall, F1 / Dice, mIoU) with threshold search.

The paper reports binary tasks this way: DeepGlobe roads (Table 3: road IoU, precision, recall, F1) and
MoNuSeg nuclei (Table 5: Dice and IoU, with and without a threshold chosen on the validation split).

The foreground score of a pixel comes from ``seg_logits`` (DiGSeg puts logit(score) of every class there):

* one channel (a one-class vocabulary such as ``['road']``): MMSeg's ``BaseSegmentor.postprocess_result``
  has already applied the sigmoid to one-channel outputs, so the stored value *is* the class's score in
  [0, 1] and is used as is (values outside [0, 1] are an error: they are not what MMSeg stores there);
* two channels (``['background', 'road']``), ``two_channel_score='softmax'`` (default): the softmax
  probability of the foreground channel, ``sigmoid(logit_fg - logit_bg)``. At threshold 0.5 this is exactly
  the argmax label map, so the search starts from the model's own decision. ``'sigmoid'``: the foreground
  prompt's own score ``sigmoid(logit_fg)``, ignoring the background prompt.

A pixel is foreground when its score is strictly above the threshold (MMSeg's convention for one-channel
heads). Ground truth: ``foreground_index`` is the foreground label, ``ignore_index`` is ignored, every
other label is background.

Aggregation (``aggregate``): ``'dataset'`` pools true/false positives/negatives over all images before
dividing (MMSeg's IoUMetric does the same); ``'image'`` computes each metric per image and averages over
the images where it is defined (a ratio 0/0, e.g. the IoU of an image with no foreground in either the
label or the prediction, is skipped).
"""
import json
import logging
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.dist import broadcast_object_list, is_main_process
from mmengine.evaluator import BaseMetric
from mmengine.logging import MessageHub, MMLogger, print_log

from mmseg.registry import METRICS

DEFAULT_THRESHOLDS = tuple(round(0.01 * i, 2) for i in range(1, 100))  # 0.01, 0.02, ..., 0.99
THRESHOLD_FILE = 'binary_threshold.json'
METRIC_KEYS = ('IoU', 'Precision', 'Recall', 'F1', 'Dice', 'mIoU', 'aAcc')


def foreground_scores(seg_logits: torch.Tensor, foreground_index: int = 1,
                      two_channel_score: str = 'softmax') -> torch.Tensor:
    """``seg_logits`` (C, H, W) of one image -> foreground scores (H, W) in [0, 1] (see the module doc)."""
    num_channels = seg_logits.shape[0]
    if num_channels == 1:
        scores = seg_logits[0].float()
        if scores.numel() and (scores.min() < 0 or scores.max() > 1):
            raise ValueError(
                'One-channel seg_logits must hold scores in [0, 1] (MMSeg\'s postprocess_result applies the '
                f'sigmoid to one-channel outputs), got values in [{scores.min():.3g}, {scores.max():.3g}].')
        return scores
    if num_channels == 2:
        if foreground_index not in (0, 1):
            raise ValueError(f'foreground_index must be 0 or 1 for two-channel seg_logits, got {foreground_index}.')
        logits = seg_logits.float()
        if two_channel_score == 'softmax':
            return torch.sigmoid(logits[foreground_index] - logits[1 - foreground_index])
        if two_channel_score == 'sigmoid':
            return torch.sigmoid(logits[foreground_index])
        raise ValueError(f"two_channel_score must be 'softmax' or 'sigmoid', got {two_channel_score!r}.")
    raise ValueError(f'BinarySegMetric needs seg_logits with 1 or 2 channels (a one- or two-class vocabulary), '
                     f'got {num_channels}; use IoUMetric for more classes.')


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _nanmean_pair(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean of two arrays where both are defined, the defined one where only one is (as MMSeg's nanmean
    over classes), NaN where neither is."""
    both = np.stack([a, b])
    defined = ~np.isnan(both)
    return _ratio(np.where(defined, both, 0).sum(0), defined.sum(0))


def metrics_from_counts(counts: np.ndarray) -> Dict[str, np.ndarray]:
    """Counts ``(..., 4)`` = (TP, FP, FN, TN) -> metrics in percent, NaN where a ratio is 0/0.

    IoU is the foreground's; mIoU is the mean of the background's and the foreground's IoU (as MMSeg's
    IoUMetric on two classes); F1 and Dice are the same number, 2TP / (2TP + FP + FN).
    """
    tp, fp, fn, tn = (counts[..., i].astype(np.float64) for i in range(4))
    iou_fg, iou_bg = _ratio(tp, tp + fp + fn), _ratio(tn, tn + fn + fp)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return {
        'IoU': 100 * iou_fg,
        'Precision': 100 * _ratio(tp, tp + fp),
        'Recall': 100 * _ratio(tp, tp + fn),
        'F1': 100 * f1,
        'Dice': 100 * f1,
        'mIoU': 100 * _nanmean_pair(iou_fg, iou_bg),
        'aAcc': 100 * _ratio(tp + tn, tp + fp + fn + tn),
    }


def aggregate_counts(per_image: np.ndarray, aggregate: str) -> Dict[str, np.ndarray]:
    """Per-image counts ``(N, ..., 4)`` -> metrics: pooled ('dataset') or averaged per image ('image')."""
    if aggregate == 'dataset':
        return metrics_from_counts(per_image.sum(0))
    per = metrics_from_counts(per_image)
    out = {}
    for key, values in per.items():
        defined = ~np.isnan(values)
        out[key] = _ratio(np.where(defined, values, 0).sum(0), defined.sum(0))
    return out


def _counts(pred_fg: torch.Tensor, gt_fg: torch.Tensor, valid: torch.Tensor) -> np.ndarray:
    tp = (pred_fg & gt_fg & valid).sum()
    fp = (pred_fg & ~gt_fg & valid).sum()
    fn = (~pred_fg & gt_fg & valid).sum()
    tn = (~pred_fg & ~gt_fg & valid).sum()
    return torch.stack([tp, fp, fn, tn]).cpu().numpy().astype(np.int64)


def sweep_counts(scores: torch.Tensor, gt_fg: torch.Tensor, valid: torch.Tensor,
                 thresholds: torch.Tensor) -> np.ndarray:
    """(TP, FP, FN, TN) at every threshold at once: ``(T, 4)``; foreground where score > threshold.

    ``searchsorted`` gives each pixel the number k of thresholds strictly below its score, so the pixel is
    foreground exactly at the thresholds j < k; histograms of k over the foreground and background pixels
    then give every count by a cumulative sum.
    """
    num = len(thresholds)
    k = torch.searchsorted(thresholds, scores[valid].contiguous().double(), right=False)
    gt = gt_fg[valid]
    hist_fg = torch.bincount(k[gt], minlength=num + 1).cpu().numpy().astype(np.int64)
    hist_bg = torch.bincount(k[~gt], minlength=num + 1).cpu().numpy().astype(np.int64)
    fn, tn = np.cumsum(hist_fg)[:num], np.cumsum(hist_bg)[:num]  # k <= j: background at threshold j
    tp, fp = hist_fg.sum() - fn, hist_bg.sum() - tn
    return np.stack([tp, fp, fn, tn], axis=-1)


def runner_work_dir() -> Optional[str]:
    """The running Runner's work_dir: its logger writes ``<work_dir>/<timestamp>/<timestamp>.log``."""
    for handler in MMLogger.get_current_instance().handlers:
        if isinstance(handler, logging.FileHandler):
            return osp.dirname(osp.dirname(osp.abspath(handler.baseFilename)))
    return None


@METRICS.register_module()
class BinarySegMetric(BaseMetric):
    """Foreground IoU, precision, recall, F1 (Dice), mIoU and aAcc of a binary task, and threshold search.

    Args:
        foreground_index (int): label of the foreground in the ground truth (and its channel in two-channel
            ``seg_logits``). Default 1, as in ``classes=('background', 'road')``.
        ignore_index (int): label ignored in the ground truth. Default 255.
        threshold (None | float | str): how pixels are binarised.
            None: the model's own label map (``pred_sem_seg``: the argmax of two classes, or MMSeg's
            threshold of one channel). A float: foreground where the score (see the module doc) is above it.
            ``'from_file'``: the threshold saved by a search (``threshold_file``), e.g. the one chosen on
            the validation split, reused on the test split.
        search_threshold (bool): also sweep ``thresholds`` on this split, report the metrics at the best
            one (and the ones of ``threshold`` with the suffix ``_default``), and save the choice, the
            metrics and the curve to ``threshold_file`` as JSON.
        thresholds (sequence of float): the sweep, strictly increasing in (0, 1). Default 0.01, ..., 0.99.
        search_by (str): 'F1' (default), 'IoU' or 'mIoU'. With ``aggregate='dataset'``, F1 and IoU pick the
            same threshold (IoU = F1 / (2 - F1) is increasing in F1).
        aggregate (str): 'dataset' (pooled counts, default) or 'image' (mean of per-image metrics).
        two_channel_score (str): 'softmax' (default) or 'sigmoid', see the module doc.
        threshold_file (str, optional): where the search saves and ``'from_file'`` reads. Default
            ``<work_dir>/binary_threshold.json`` of the running Runner.
    """
    default_prefix: Optional[str] = None

    def __init__(self,
                 foreground_index: int = 1,
                 ignore_index: int = 255,
                 threshold: Union[None, float, str] = None,
                 search_threshold: bool = False,
                 thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                 search_by: str = 'F1',
                 aggregate: str = 'dataset',
                 two_channel_score: str = 'softmax',
                 threshold_file: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 **kwargs) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not (threshold is None or threshold == 'from_file' or
                (isinstance(threshold, (int, float)) and 0 <= threshold < 1)):
            raise ValueError(f"threshold must be None, a number in [0, 1) or 'from_file', got {threshold!r}.")
        if search_by not in ('F1', 'IoU', 'mIoU'):
            raise ValueError(f"search_by must be 'F1', 'IoU' or 'mIoU', got {search_by!r}.")
        if aggregate not in ('dataset', 'image'):
            raise ValueError(f"aggregate must be 'dataset' or 'image', got {aggregate!r}.")
        if two_channel_score not in ('softmax', 'sigmoid'):
            raise ValueError(f"two_channel_score must be 'softmax' or 'sigmoid', got {two_channel_score!r}.")
        thresholds = np.asarray(thresholds, np.float64)
        if search_threshold and (thresholds.ndim != 1 or not len(thresholds) or np.any(np.diff(thresholds) <= 0)
                                 or thresholds[0] < 0 or thresholds[-1] >= 1):
            raise ValueError('thresholds must be a non-empty, strictly increasing sequence in [0, 1).')
        if kwargs:
            raise TypeError(f'BinarySegMetric got unknown arguments {sorted(kwargs)}.')
        self.foreground_index = foreground_index
        self.ignore_index = ignore_index
        self.threshold = threshold
        self.search_threshold = search_threshold
        self.thresholds = thresholds
        self.search_by = search_by
        self.aggregate = aggregate
        self.two_channel_score = two_channel_score
        self.threshold_file = threshold_file
        self._loaded_threshold = None

    # ---- threshold file ---------------------------------------------------------------------------
    def _file(self) -> str:
        if self.threshold_file:
            return self.threshold_file
        work_dir = runner_work_dir()
        if work_dir is None:
            raise RuntimeError('BinarySegMetric: no threshold_file given and no Runner work_dir to keep it in; '
                               'pass threshold_file=PATH.')
        return osp.join(work_dir, THRESHOLD_FILE)

    def load_threshold(self) -> float:
        path = self._file()
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'BinarySegMetric(threshold="from_file"): {path} does not exist. It is written by a '
                'BinarySegMetric(search_threshold=True) run on the validation split (the val_evaluator of '
                'the project configs, run during training or by tools/test.py with the val split as the '
                'test split); or give a number: --cfg-options test_evaluator.threshold=0.5')
        with open(path) as f:
            record = json.load(f)
        threshold = float(record['threshold'])
        print_log(f'BinarySegMetric: threshold {threshold:.4g} from {path} (chosen by {record.get("search_by")} '
                  f'on {record.get("num_images")} images).', 'current')
        return threshold

    def _decision_threshold(self) -> Optional[float]:
        if self.threshold == 'from_file':
            if self._loaded_threshold is None:  # read on the main process (which has the work dir), shared
                value = [self.load_threshold() if is_main_process() else None]
                broadcast_object_list(value)
                self._loaded_threshold = value[0]
            return self._loaded_threshold
        return None if self.threshold is None else float(self.threshold)

    # ---- BaseMetric -------------------------------------------------------------------------------
    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        threshold = self._decision_threshold()
        thresholds = torch.as_tensor(self.thresholds, dtype=torch.float64)
        for data_sample in data_samples:
            gt = data_sample['gt_sem_seg']['data'].squeeze(0)
            valid = gt != self.ignore_index
            gt_fg = gt == self.foreground_index
            scores = None
            if threshold is not None or self.search_threshold:
                if 'seg_logits' not in data_sample:
                    raise KeyError(
                        'BinarySegMetric needs seg_logits to threshold scores (threshold or search_threshold '
                        'set), but the prediction has none: keep model.test_cfg.return_logits=True, and do not '
                        'use --tta (SegTTAModel keeps only the label map).')
                scores = foreground_scores(data_sample['seg_logits']['data'], self.foreground_index,
                                           self.two_channel_score).to(gt.device)
            if threshold is None:
                pred_fg = data_sample['pred_sem_seg']['data'].squeeze(0).to(gt.device) == self.foreground_index
            else:
                pred_fg = scores > threshold
            result = dict(counts=_counts(pred_fg, gt_fg, valid))
            if self.search_threshold:
                result['sweep'] = sweep_counts(scores, gt_fg, valid, thresholds.to(scores.device))
            self.results.append(result)

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        logger = MMLogger.get_current_instance()
        counts = np.stack([r['counts'] for r in results])
        decision = {k: float(v) for k, v in aggregate_counts(counts, self.aggregate).items()}
        if not self.search_threshold:
            self._log_table(decision, self._describe_decision(), logger)
            if self.threshold is not None:
                decision['threshold'] = float(self._loaded_threshold if self.threshold == 'from_file'
                                              else self.threshold)
            return decision
        curve = aggregate_counts(np.stack([r['sweep'] for r in results]), self.aggregate)
        target = np.nan_to_num(curve[self.search_by], nan=-np.inf)
        best = int(np.argmax(target))  # the first (lowest) threshold among equal bests
        chosen = {k: float(v[best]) for k, v in curve.items()}
        threshold = float(self.thresholds[best])
        record = dict(
            threshold=threshold, search_by=self.search_by, aggregate=self.aggregate,
            two_channel_score=self.two_channel_score, foreground_index=self.foreground_index,
            classes=list((self.dataset_meta or {}).get('classes') or []), num_images=len(results),
            iter=_current_iter(), metrics=chosen,
            default=dict(decision=self._describe_decision(), metrics=decision),
            curve=dict(thresholds=self.thresholds.tolist(),
                       **{k: [None if np.isnan(x) else float(x) for x in curve[k]] for k in ('IoU', 'F1', 'mIoU')}))
        if is_main_process():
            path = self._file()
            os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
            with open(path, 'w') as f:
                json.dump(record, f, indent=2)
            print_log(f'BinarySegMetric: best {self.search_by} at threshold {threshold:.4g}; saved to {path}',
                      logger)
        self._log_table(chosen, f'threshold {threshold:.4g} (searched)', logger, decision,
                        self._describe_decision())
        out = dict(chosen, threshold=threshold)
        out.update({f'{k}_default': v for k, v in decision.items()})
        return out

    def _describe_decision(self) -> str:
        if self.threshold is None:
            return "the model's label map"
        if self.threshold == 'from_file':
            return f'threshold {self._loaded_threshold} (from file)'
        return f'threshold {float(self.threshold):.4g}'

    def _log_table(self, metrics, name, logger, other=None, other_name=None):
        lines = [f'BinarySegMetric ({self.aggregate} aggregation):',
                 f'{"":<34}' + ''.join(f'{k:>10}' for k in METRIC_KEYS)]
        for row_name, row in ((name, metrics), (other_name, other)):
            if row is not None:
                lines.append(f'{row_name:<34}' + ''.join(f'{row[k]:>10.2f}' for k in METRIC_KEYS))
        print_log('\n'.join(lines), logger)


def _current_iter() -> Optional[int]:
    """Training iterations done when this validation ran (N of iter_N.pth); None outside training."""
    last = MessageHub.get_current_instance().get_info('iter')  # 0-based index of the last training iteration
    return None if last is None else int(last) + 1
