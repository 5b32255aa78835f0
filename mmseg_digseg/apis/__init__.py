from .inference import init_digseg, result_scores, segment
from .render import render_overlay, render_result, render_score_maps

__all__ = ['init_digseg', 'segment', 'result_scores', 'render_overlay', 'render_score_maps', 'render_result']
