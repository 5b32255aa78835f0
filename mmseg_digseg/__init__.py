"""mmseg_digseg: DiGSeg (a diffusion model as a generalist segmentation learner) for MMSegmentation.

Importing the package registers its models, datasets, transforms and hooks in MMSeg's registries.
"""
from .engine import allow_mmengine_checkpoints

allow_mmengine_checkpoints()

from . import apis, datasets, engine, evaluation, models, visualization  # noqa: E402,F401

__version__ = '0.1.0'
