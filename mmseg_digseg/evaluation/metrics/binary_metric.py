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
the images where it is defined. A ratio 0/0 is undefined, and by default (``empty_images='skip'``) the
image leaves that metric's average: an image with no foreground in either the label or the prediction
counts for none of IoU, precision, recall and F1 / Dice (only for aAcc and the background half of mIoU).
A threshold that leaves such an image empty therefore gains nothing from it, while one that puts a few
false positives on it scores 0 there. ``empty_images='perfect'`` counts that image as 100 for those four
metrics instead (the convention of several remote-sensing papers, which score an empty tile predicted
empty as right); in a threshold search this pulls harder towards thresholds that keep such images empty
(tests/test_evaluation/test_binary_metric.py has a case where the two conventions choose differently).
An image with foreground on one side only keeps its undefined ratio skipped either way (the precision of an
empty prediction, the recall of an empty label).

Which weights a threshold belongs to: a search records it under the weights it ran on (the run's
``experiment_name`` and its training iterations) in ``threshold_file``, and ``BinaryThresholdHook`` (a
custom hook of the project configs) tells the metric which weights it evaluates and stores the search in
the meta of the checkpoint saved right after it (``save_best``). ``threshold='from_file'`` then uses the
threshold of the weights under test: the loaded checkpoint's own, else the file's entry for them, else
an error saying how to search it (``tools/test.py CONFIG CKPT --search-threshold``).
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
CHECKPOINT_META_KEY = 'binary_threshold'  # checkpoint['meta'][CHECKPOINT_META_KEY]: the search of these weights
METRIC_KEYS = ('IoU', 'Precision', 'Recall', 'F1', 'Dice', 'mIoU', 'aAcc')
FOREGROUND_KEYS = ('IoU', 'Precision', 'Recall', 'F1', 'Dice')  # undefined on an image without foreground
SEARCH_COMMAND = 'python tools/test.py CONFIG CHECKPOINT --search-threshold'


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


def aggregate_counts(per_image: np.ndarray, aggregate: str, empty_images: str = 'skip') -> Dict[str, np.ndarray]:
    """Per-image counts ``(N, ..., 4)`` -> metrics: pooled ('dataset') or averaged per image ('image');
    ``empty_images`` (per image only): 'skip' or 'perfect', see the module doc."""
    if aggregate == 'dataset':
        return metrics_from_counts(per_image.sum(0))
    per = metrics_from_counts(per_image)
    if empty_images == 'perfect':
        tp, fp, fn, tn = (per_image[..., i] for i in range(4))
        empty = (tp + fp + fn == 0) & (tn > 0)  # no foreground in label nor prediction, some valid pixel
        for key in FOREGROUND_KEYS:
            per[key] = np.where(empty, 100.0, per[key])
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


def weights_name(weights: Optional[dict]) -> Optional[str]:
    """``'<experiment_name> iter <N>'``: the weights of run ``experiment_name`` after N training iterations,
    as a checkpoint's meta and the Runner name them; None when either is unknown."""
    if not weights or weights.get('experiment_name') is None or weights.get('iter') is None:
        return None
    return f"{weights['experiment_name']} iter {int(weights['iter'])}"


def search_summary(record: dict) -> dict:
    """A search's record without its curve (what the checkpoint meta and the file's ``by_weights`` keep)."""
    return {k: v for k, v in record.items() if k not in ('curve', 'default', 'by_weights')}


def _read_json(path: str) -> Optional[dict]:
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


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
            ``'from_file'``: the threshold a search chose for the weights under test (the loaded
            checkpoint's meta, else their entry in ``threshold_file``; an error when neither has one),
            e.g. the one chosen on the validation split, reused on the test split.
        search_threshold (bool): also sweep ``thresholds`` on this split, report the metrics at the best
            one (and the ones of ``threshold`` with the suffix ``_default``), and save the choice, the
            metrics and the curve to ``threshold_file`` as JSON, under the weights searched (``by_weights``).
        thresholds (sequence of float): the sweep, strictly increasing in (0, 1). Default 0.01, ..., 0.99.
        search_by (str): 'F1' (default), 'IoU' or 'mIoU'. With ``aggregate='dataset'``, F1 and IoU pick the
            same threshold (IoU = F1 / (2 - F1) is increasing in F1).
        aggregate (str): 'dataset' (pooled counts, default) or 'image' (mean of per-image metrics).
        empty_images (str): with ``aggregate='image'``, an image with no foreground in either the label or
            the prediction: 'skip' (default) leaves it out of the IoU, precision, recall and F1 / Dice
            averages, 'perfect' counts it as 100 there. See the module doc.
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
                 empty_images: str = 'skip',
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
        if empty_images not in ('skip', 'perfect'):
            raise ValueError(f"empty_images must be 'skip' or 'perfect', got {empty_images!r}.")
        if empty_images == 'perfect' and aggregate != 'image':
            raise ValueError("empty_images='perfect' scores images one by one: it needs aggregate='image' (pooled "
                             "counts have no per-image 0/0 to score).")
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
        self.empty_images = empty_images
        self.two_channel_score = two_channel_score
        self.threshold_file = threshold_file
        self.weights = None  # the weights evaluated (set_weights, by BinaryThresholdHook); None: unknown
        self.last_search = None  # the record of this metric's last search (on the main process)
        self._loaded_threshold = None

    def set_weights(self, weights: Optional[dict]) -> None:
        """Which weights the next evaluation runs on: ``dict(experiment_name, iter, record)``, ``record``
        being the search stored in the loaded checkpoint (None if it has none)."""
        self.weights = weights
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
        """The threshold of the weights under test (``threshold='from_file'``), see the module doc."""
        record = (self.weights or {}).get('record')
        source = 'the checkpoint'
        if record is None:
            source = path = self._file()
            saved = _read_json(path)
            if self.weights is None:  # no Runner hook said which weights these are: the file's last search
                if saved is None:
                    raise FileNotFoundError(
                        f'BinarySegMetric(threshold="from_file"): {path} does not exist. It is written by a '
                        'BinarySegMetric(search_threshold=True) run on the validation split (the '
                        f'val_evaluator of the project configs, run during training or by {SEARCH_COMMAND}); '
                        'or give a number: --cfg-options test_evaluator.threshold=0.5')
                record = saved
                print_log(f'BinarySegMetric: the weights evaluated are unknown (no BinaryThresholdHook in '
                          f'custom_hooks): using the last search in {path}, which may be of other weights.',
                          'current', logging.WARNING)
            else:
                name = weights_name(self.weights)
                searched = (saved or {}).get('by_weights', {})
                record = searched.get(name)
                if record is None:
                    have = ('does not exist' if saved is None else
                            f'has thresholds for {sorted(searched) or "no named weights"} only')
                    raise ValueError(
                        f'BinarySegMetric(threshold="from_file"): no threshold was searched for the weights under '
                        f'test ({name or "a checkpoint whose meta names no experiment_name / iter"}): the '
                        f'checkpoint\'s meta has none and {path} {have}. Search it on the validation split '
                        f'first: {SEARCH_COMMAND} (same work_dir), then test again; or give a threshold: '
                        '--cfg-options test_evaluator.threshold=0.5')
        threshold = float(record['threshold'])
        print_log(f'BinarySegMetric: threshold {threshold:.4g} from {source} (chosen by {record.get("search_by")} '
                  f'on {record.get("num_images")} images, weights {weights_name(record)}).', 'current')
        return threshold

    def _decision_threshold(self) -> Optional[float]:
        if self.threshold == 'from_file':
            if self._loaded_threshold is None:  # read on the main process (which has the work dir), shared
                value = [self.load_threshold() if is_main_process() else None]
                broadcast_object_list(value)
                self._loaded_threshold = value[0]
            return self._loaded_threshold
        return None if self.threshold is None else float(self.threshold)

    def _save(self, record: dict) -> str:
        """Write the search to the threshold file, keeping the earlier searches' thresholds by weights."""
        path = self._file()
        by_weights = (_read_json(path) or {}).get('by_weights', {})
        if weights_name(record) is not None:
            by_weights[weights_name(record)] = search_summary(record)
        os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
        with open(path, 'w') as f:
            json.dump(dict(record, by_weights=by_weights), f, indent=2)
        return path

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
        decision = {k: float(v) for k, v in aggregate_counts(counts, self.aggregate, self.empty_images).items()}
        if not self.search_threshold:
            self._log_table(decision, self._describe_decision(), logger)
            if self.threshold is not None:
                decision['threshold'] = float(self._loaded_threshold if self.threshold == 'from_file'
                                              else self.threshold)
            return decision
        curve = aggregate_counts(np.stack([r['sweep'] for r in results]), self.aggregate, self.empty_images)
        target = np.nan_to_num(curve[self.search_by], nan=-np.inf)
        best = int(np.argmax(target))  # the first (lowest) threshold among equal bests
        chosen = {k: float(v[best]) for k, v in curve.items()}
        threshold = float(self.thresholds[best])
        weights = self.weights or dict(iter=_current_iter())
        record = dict(
            threshold=threshold, search_by=self.search_by, aggregate=self.aggregate,
            empty_images=self.empty_images, two_channel_score=self.two_channel_score,
            foreground_index=self.foreground_index, classes=list((self.dataset_meta or {}).get('classes') or []),
            num_images=len(results), experiment_name=weights.get('experiment_name'), iter=weights.get('iter'),
            metrics=chosen,
            default=dict(decision=self._describe_decision(), metrics=decision),
            curve=dict(thresholds=self.thresholds.tolist(),
                       **{k: [None if np.isnan(x) else float(x) for x in curve[k]] for k in ('IoU', 'F1', 'mIoU')}))
        self.last_search = record
        if is_main_process():
            path = self._save(record)
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
            return f'threshold {self._loaded_threshold} (searched for these weights)'
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
