from .digseg import DiGSeg, scores_to_logits
from .digseg_palette import DiGSegPalette

__all__ = ['DiGSeg', 'DiGSegPalette', 'scores_to_logits']
