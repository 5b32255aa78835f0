"""Confusion matrix of ground-truth class vs predicted class, as an MMEngine metric.

``ConfusionMatrixMetric`` accumulates, over a split, a ``(C + 1) x C`` matrix of pixel counts: row
``g < C`` and column ``p`` count the pixels of ground-truth class ``g`` predicted as class ``p``; the last
row counts the pixels whose ground truth is ignored (``ignore_index``, or any label outside ``[0, C)``)
by predicted class, kept for inspection and left out of every score. From the first ``C`` rows it
reports what MMSeg's ``IoUMetric`` reports (pooled over the split): per-class IoU, mIoU (classes absent
from both ground truth and prediction left out) and aAcc, in percent. The matrix of the last evaluation
stays on the metric (``metric.matrix``), for tools/analysis_tools/confusion_matrix.py.
"""
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger, print_log
from mmseg.registry import METRICS


def confusion_counts(pred: torch.Tensor, gt: torch.Tensor, num_classes: int,
                     ignore_index: Optional[int] = 255) -> np.ndarray:
    """(C + 1, C) int64 counts of one prediction: rows ground truth (last row: ignored), columns prediction.

    Predicted labels outside ``[0, C)`` are not counted (a prediction is always in range for MMSeg's
    segmentors)."""
    pred = torch.as_tensor(pred).reshape(-1).long().cpu()
    gt = torch.as_tensor(gt).reshape(-1).long().cpu()
    if pred.shape != gt.shape:
        raise ValueError(f'prediction and ground truth differ in size: {tuple(pred.shape)} vs {tuple(gt.shape)}')
    keep = (pred >= 0) & (pred < num_classes)
    pred, gt = pred[keep], gt[keep]
    ignored = (gt < 0) | (gt >= num_classes)
    if ignore_index is not None:
        ignored |= gt == ignore_index
    row = torch.where(ignored, torch.full_like(gt, num_classes), gt)
    counts = torch.bincount(row * num_classes + pred, minlength=(num_classes + 1) * num_classes)
    return counts.reshape(num_classes + 1, num_classes).numpy().astype(np.int64)


def scores_from_confusion(matrix: np.ndarray) -> Dict[str, np.ndarray]:
    """Per-class IoU and Acc (fractions; NaN where undefined), mIoU, mAcc and aAcc, from the first C rows."""
    matrix = np.asarray(matrix, np.float64)
    num_classes = matrix.shape[1]
    m = matrix[:num_classes]
    tp = np.diag(m)
    gt_total, pred_total = m.sum(1), m.sum(0)
    union = gt_total + pred_total - tp
    with np.errstate(divide='ignore', invalid='ignore'):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt_total > 0, tp / gt_total, np.nan)
    total = m.sum()
    return dict(IoU=iou, Acc=acc,
                mIoU=float(np.nanmean(iou)) if np.isfinite(iou).any() else float('nan'),
                mAcc=float(np.nanmean(acc)) if np.isfinite(acc).any() else float('nan'),
                aAcc=float(tp.sum() / total) if total > 0 else float('nan'))


def row_normalised(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum, in percent (rows without pixels stay 0)."""
    matrix = np.asarray(matrix, np.float64)
    sums = matrix.sum(1, keepdims=True)
    return np.divide(matrix, sums, out=np.zeros_like(matrix), where=sums > 0) * 100


@METRICS.register_module()
class ConfusionMatrixMetric(BaseMetric):
    """Accumulate the ground truth vs prediction confusion matrix; report IoU per class, mIoU and aAcc.

    Args:
        ignore_index (int, optional): ground-truth label left out of the scores (counted in the last row).
            Labels outside ``[0, num_classes)`` are always treated so. Default 255.
        num_classes (int, optional): default: the number of classes of ``dataset_meta``.
        per_class (bool): also return ``IoU.<class>`` entries (percent). Default True.
    """
    default_prefix: Optional[str] = None

    def __init__(self, ignore_index: Optional[int] = 255, num_classes: Optional[int] = None,
                 per_class: bool = True, collect_device: str = 'cpu', prefix: Optional[str] = None,
                 **kwargs) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if kwargs:
            raise TypeError(f'ConfusionMatrixMetric got unknown arguments {sorted(kwargs)}.')
        self.ignore_index = ignore_index
        self._num_classes = num_classes
        self.per_class = per_class
        self.matrix: Optional[np.ndarray] = None
        self.num_images = 0

    @property
    def num_classes(self) -> int:
        if self._num_classes is not None:
            return int(self._num_classes)
        classes = (self.dataset_meta or {}).get('classes')
        if not classes:
            raise ValueError('ConfusionMatrixMetric: no num_classes given and no dataset_meta classes.')
        return len(classes)

    @property
    def class_names(self) -> List[str]:
        classes = list((self.dataset_meta or {}).get('classes') or [])
        return [str(c) for c in classes] if len(classes) == self.num_classes else \
            [str(i) for i in range(self.num_classes)]

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        for data_sample in data_samples:
            pred = data_sample['pred_sem_seg']['data'].squeeze(0)
            gt = data_sample['gt_sem_seg']['data'].squeeze(0).to(pred.device)
            self.results.append(confusion_counts(pred, gt, self.num_classes, self.ignore_index))

    def compute_metrics(self, results: List[np.ndarray]) -> Dict[str, float]:
        self.matrix = np.sum(np.stack(results), axis=0) if results else \
            np.zeros((self.num_classes + 1, self.num_classes), np.int64)
        self.num_images = len(results)
        scores = scores_from_confusion(self.matrix)
        out = dict(aAcc=round(scores['aAcc'] * 100, 2), mIoU=round(scores['mIoU'] * 100, 2),
                   mAcc=round(scores['mAcc'] * 100, 2))
        if self.per_class:
            for name, iou in zip(self.class_names, scores['IoU']):
                out[f'IoU.{name}'] = round(float(iou) * 100, 2) if np.isfinite(iou) else float('nan')
        print_log(f'ConfusionMatrixMetric: {self.num_images} images, mIoU {out["mIoU"]}, aAcc {out["aAcc"]}',
                  MMLogger.get_current_instance())
        return out
