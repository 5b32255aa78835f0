from .digseg import DiGSeg, scores_to_logits

__all__ = ['DiGSeg', 'scores_to_logits']
