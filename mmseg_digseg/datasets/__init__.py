from .ade20k_full import ADE20KFull847Dataset
from .deepglobe_road import DeepGlobeRoadDataset
from .monuseg import MoNuSegDataset
from .pascal_context_459 import PascalContext459Dataset
from .phenobench import PhenoBenchDataset
from .synth_shapes import CLASSES as SYNTH_SHAPES_CLASSES
from .synth_shapes import MANY_CLASSES as SYNTH_SHAPES_MANY_CLASSES
from .synth_shapes import SynthShapesDataset, SynthShapesManyDataset, generate_synth_shapes
from .transforms import LoadImageAsBGR8, LoadWideAnnotations, to_bgr8
from .vocabularies import load_vocabulary

__all__ = [
    'ADE20KFull847Dataset', 'PascalContext459Dataset', 'DeepGlobeRoadDataset', 'MoNuSegDataset',
    'PhenoBenchDataset', 'SynthShapesDataset', 'SynthShapesManyDataset', 'generate_synth_shapes',
    'SYNTH_SHAPES_CLASSES', 'SYNTH_SHAPES_MANY_CLASSES', 'LoadImageAsBGR8', 'LoadWideAnnotations', 'to_bgr8',
    'load_vocabulary'
]
