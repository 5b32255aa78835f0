"""DeepGlobe Road Extraction (CVPR 2018 DeepGlobe challenge): 1024x1024 satellite tiles (50 cm/pixel,
Thailand, Indonesia, India) with binary road masks.

Layout (what ``tools/dataset_converters/deepglobe_road.py`` writes from the official release)::

    data_root/img_dir/{train,val,test}/<id>.jpg      RGB tiles, 1024x1024
    data_root/ann_dir/{train,val,test}/<id>.png      uint8, 0 = background, 1 = road

Only the release's ``train`` folder has masks (6226 tiles), so the converter splits it into
train / val / test; the paper does not state its split.
"""
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS


@DATASETS.register_module()
class DeepGlobeRoadDataset(BaseSegDataset):
    """DeepGlobe road extraction: ``background`` (0) and ``road`` (1)."""

    METAINFO = dict(classes=('background', 'road'), palette=[[0, 0, 0], [255, 255, 255]])

    def __init__(self, img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=False, **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         reduce_zero_label=reduce_zero_label, **kwargs)
