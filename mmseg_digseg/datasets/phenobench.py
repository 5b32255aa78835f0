"""PhenoBench (Weyler et al., TPAMI 2024): 1024x1024 UAV images of sugar beet fields, semantic
segmentation into soil, crop and weed.

Layout (what ``tools/dataset_converters/phenobench.py`` writes from the official ``PhenoBench`` folder)::

    data_root/img_dir/{train,val,test}/<name>.png     RGB, 1024x1024 (test: images only)
    data_root/ann_dir/{train,val}/<name>.png          uint8, 0 = soil, 1 = crop, 2 = weed

The official ``semantics`` maps also label partially visible plants (3 = partial crop, 4 = partial weed);
the benchmark's semantic segmentation task counts them as crop and weed, and so does the converter.
The official test labels are hidden (evaluated on the benchmark server), so numbers here are on val.
"""
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS


@DATASETS.register_module()
class PhenoBenchDataset(BaseSegDataset):
    """PhenoBench semantic segmentation: ``soil`` (0), ``crop`` (1), ``weed`` (2)."""

    METAINFO = dict(classes=('soil', 'crop', 'weed'), palette=[[120, 80, 40], [0, 200, 0], [230, 40, 40]])

    def __init__(self, img_suffix='.png', seg_map_suffix='.png', reduce_zero_label=False, **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         reduce_zero_label=reduce_zero_label, **kwargs)
