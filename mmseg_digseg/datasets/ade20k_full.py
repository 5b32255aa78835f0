"""ADE20K-Full (A-847): 847 classes of ADE20K_2021_17_01, the open-vocabulary evaluation benchmark.

Layout (what ``tools/dataset_converters/ade20k_full.py`` writes, identical to Mask2Former's
``datasets/prepare_ade20k_full_sem_seg.py``, so data converted with either can be used)::

    data_root/ADE20K_2021_17_01/images_detectron2/{training,validation}/ADE_*.jpg
    data_root/ADE20K_2021_17_01/annotations_detectron2/{training,validation}/ADE_*.tif
                                              uint16, pixel = train id 0..846, 65535 = unlabeled

Train ids go above 255, so labels must be loaded with ``LoadWideAnnotations`` (MMSeg's
``LoadAnnotations`` casts them to uint8), and the evaluator needs ``ignore_index=65535``.
"""
from mmseg.registry import DATASETS

from .wide_label_dataset import WideLabelSegDataset, vocabulary_metainfo


@DATASETS.register_module()
class ADE20KFull847Dataset(WideLabelSegDataset):
    """ADE20K-Full with 847 classes (see the module docstring for the layout). Nine first synonyms
    repeat (e.g. three 'bag' classes): the train id, not the name, identifies a class."""

    METAINFO = vocabulary_metainfo('ade20k_847', seed=847)

    def __init__(self,
                 data_prefix=dict(
                     img_path='ADE20K_2021_17_01/images_detectron2/validation',
                     seg_map_path='ADE20K_2021_17_01/annotations_detectron2/validation'),
                 **kwargs):
        super().__init__(data_prefix=data_prefix, **kwargs)
