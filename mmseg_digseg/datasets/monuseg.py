"""MoNuSeg (Multi-Organ Nucleus Segmentation, MICCAI 2018): 1000x1000 H&E tiles (40x, TCGA, 7 organs)
with every nucleus outlined as a polygon in an XML file.

Layout (what ``tools/dataset_converters/monuseg.py`` writes: the polygons filled into binary masks)::

    data_root/img_dir/{train,val,test}/<TCGA id>.png     RGB tiles, 1000x1000
    data_root/ann_dir/{train,val,test}/<TCGA id>.png     uint8, 0 = background, 1 = nucleus

``train`` and ``val`` come from the 30 training images (the validation images choose the binarisation
threshold), ``test`` is the official 14-image test set.
"""
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS


@DATASETS.register_module()
class MoNuSegDataset(BaseSegDataset):
    """MoNuSeg nuclei: ``background`` (0) and ``nucleus`` (1)."""

    METAINFO = dict(classes=('background', 'nucleus'), palette=[[0, 0, 0], [255, 0, 255]])

    def __init__(self, img_suffix='.png', seg_map_suffix='.png', reduce_zero_label=False, **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         reduce_zero_label=reduce_zero_label, **kwargs)
