"""mmseg_digseg: DiGSeg (a diffusion model as a generalist segmentation learner) for MMSegmentation.

Importing the package registers its models, datasets, transforms and hooks in MMSeg's registries.
"""
from .compat import patch_transformers_for_mmpretrain

patch_transformers_for_mmpretrain()  # before anything imports MMSeg's models

from .engine import allow_mmengine_checkpoints  # noqa: E402

allow_mmengine_checkpoints()

from . import apis, datasets, engine, evaluation, models, visualization  # noqa: E402,F401

__version__ = '0.1.0'
