from .binary_metric import BinarySegMetric, foreground_scores, metrics_from_counts

__all__ = ['BinarySegMetric', 'foreground_scores', 'metrics_from_counts']
