from .ade20k_full import ADE20KFull847Dataset
from .pascal_context_459 import PascalContext459Dataset
from .synth_shapes import CLASSES as SYNTH_SHAPES_CLASSES
from .synth_shapes import SynthShapesDataset, generate_synth_shapes
from .transforms import LoadImageAsBGR8, LoadWideAnnotations, to_bgr8
from .vocabularies import load_vocabulary

__all__ = [
    'ADE20KFull847Dataset', 'PascalContext459Dataset', 'SynthShapesDataset', 'generate_synth_shapes',
    'SYNTH_SHAPES_CLASSES', 'LoadImageAsBGR8', 'LoadWideAnnotations', 'to_bgr8', 'load_vocabulary'
]
