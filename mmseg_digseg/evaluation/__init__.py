"""Metrics registered in MMSeg's ``METRICS`` registry."""
from .confusion_metric import ConfusionMatrixMetric
from .metrics import BinarySegMetric, foreground_scores, metrics_from_counts

__all__ = ['BinarySegMetric', 'ConfusionMatrixMetric', 'foreground_scores', 'metrics_from_counts']
