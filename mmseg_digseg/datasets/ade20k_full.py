"""ADE20K-Full (A-847): 847 classes of ADE20K_2021_17_01, the open-vocabulary evaluation benchmark.

Layout (what ``tools/dataset_converters/ade20k_full.py`` writes, identical to Mask2Former's
``datasets/prepare_ade20k_full_sem_seg.py``, so data converted with either can be used)::

    data_root/ADE20K_2021_17_01/images_detectron2/{training,validation}/ADE_*.jpg
    data_root/ADE20K_2021_17_01/annotations_detectron2/{training,validation}/ADE_*.tif
                                              uint16, pixel = train id 0..846, 65535 = unlabeled

Train ids go above 255, so labels must be loaded with ``LoadWideAnnotations`` (MMSeg's
``LoadAnnotations`` casts them to uint8), and the evaluator needs ``ignore_index=65535``.
"""
import numpy as np
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from .vocabularies import load_vocabulary

# Each vocabulary line is "name, synonym, ..."; the dataset's class names are the first synonyms.
# They are not unique (e.g. three 'bag' classes): the train id, not the name, identifies a class.
CLASSES = tuple(line.split(',')[0].strip() for line in load_vocabulary('ade20k_847'))
# Seeded random colours: deterministic, and distinct enough for 847 classes.
PALETTE = np.random.default_rng(847).integers(0, 256, (len(CLASSES), 3)).tolist()
IGNORE_INDEX = 65535


@DATASETS.register_module()
class ADE20KFull847Dataset(BaseSegDataset):
    """ADE20K-Full with 847 classes (see the module docstring for the layout)."""

    METAINFO = dict(classes=CLASSES, palette=PALETTE)

    def __init__(self,
                 img_suffix='.jpg',
                 seg_map_suffix='.tif',
                 reduce_zero_label=False,
                 ignore_index=IGNORE_INDEX,
                 data_prefix=dict(
                     img_path='ADE20K_2021_17_01/images_detectron2/validation',
                     seg_map_path='ADE20K_2021_17_01/annotations_detectron2/validation'),
                 **kwargs):
        super().__init__(
            img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, reduce_zero_label=reduce_zero_label,
            ignore_index=ignore_index, data_prefix=data_prefix, **kwargs)

    @classmethod
    def get_label_map(cls, new_classes=None):
        """Always ``None``: the label files hold train ids, whatever the classes are called.

        Renaming all 847 classes (e.g. to the full synonym lines) is fine. Subsets are refused:
        MMSeg would map the dropped classes to 255, a real class here ('pier'), and the first
        synonyms repeat, so a class cannot be picked by name.
        """
        if new_classes is not None and len(new_classes) != len(CLASSES):
            raise ValueError(f'{cls.__name__} takes all {len(CLASSES)} classes in train-id order (names may '
                             f'differ), got {len(new_classes)}; class subsets are not supported.')
        return None
