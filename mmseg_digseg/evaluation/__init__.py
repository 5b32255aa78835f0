"""Metrics registered in MMSeg's ``METRICS`` registry."""
from .metrics import BinarySegMetric, foreground_scores, metrics_from_counts

__all__ = ['BinarySegMetric', 'foreground_scores', 'metrics_from_counts']
