"""Visualizers registered in MMSeg's ``VISUALIZERS`` registry."""
from .digseg_visualizer import DiGSegVisualizer, label_colours

__all__ = ['DiGSegVisualizer', 'label_colours']
