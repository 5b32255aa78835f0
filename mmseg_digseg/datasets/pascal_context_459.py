"""PASCAL-Context full (PC-459): all 459 classes of PASCAL-Context, the open-vocabulary benchmark.

Layout (what ``tools/dataset_converters/pascal_context_459.py`` writes, identical to CAT-Seg's
``datasets/prepare_pascal_context_459.py``, so data converted with either can be used)::

    data_root/VOCdevkit/VOC2010/JPEGImages/*.jpg                     all VOC2010 images
    data_root/VOCdevkit/VOC2010/annotations_detectron2/pc459_val/*.tif
                                uint16, pixel = train id 0..458, 65535 = unlabeled

JPEGImages holds every VOC2010 image, so the samples are the label files found (or the ids of
``ann_file``), not the images. Train ids go above 255, so labels must be loaded with
``LoadWideAnnotations`` (MMSeg's ``LoadAnnotations`` casts them to uint8), and the evaluator needs
``ignore_index=65535``.
"""
import os.path as osp

import numpy as np
from mmengine import fileio
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from .vocabularies import load_vocabulary

# Each vocabulary line is "name, synonym, ..."; the dataset's class names are the first synonyms.
CLASSES = tuple(line.split(',')[0].strip() for line in load_vocabulary('pascal_context_459'))
# Seeded random colours: deterministic, and distinct enough for 459 classes.
PALETTE = np.random.default_rng(459).integers(0, 256, (len(CLASSES), 3)).tolist()
IGNORE_INDEX = 65535


@DATASETS.register_module()
class PascalContext459Dataset(BaseSegDataset):
    """PASCAL-Context with 459 classes (see the module docstring for the layout)."""

    METAINFO = dict(classes=CLASSES, palette=PALETTE)

    def __init__(self,
                 img_suffix='.jpg',
                 seg_map_suffix='.tif',
                 reduce_zero_label=False,
                 ignore_index=IGNORE_INDEX,
                 data_prefix=dict(
                     img_path='VOCdevkit/VOC2010/JPEGImages',
                     seg_map_path='VOCdevkit/VOC2010/annotations_detectron2/pc459_val'),
                 **kwargs):
        super().__init__(
            img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, reduce_zero_label=reduce_zero_label,
            ignore_index=ignore_index, data_prefix=data_prefix, **kwargs)

    @classmethod
    def get_label_map(cls, new_classes=None):
        """Always ``None``: the label files hold train ids, whatever the classes are called.

        Renaming all 459 classes (e.g. to the full synonym lines) is fine. Subsets are refused:
        MMSeg would map the dropped classes to 255, which is a real class here.
        """
        if new_classes is not None and len(new_classes) != len(CLASSES):
            raise ValueError(f'{cls.__name__} takes all {len(CLASSES)} classes in train-id order (names may '
                             f'differ), got {len(new_classes)}; class subsets are not supported.')
        return None

    def load_data_list(self):
        """One sample per label file (sorted), unless ``ann_file`` lists the image ids."""
        if self.ann_file:
            return super().load_data_list()
        img_dir = self.data_prefix.get('img_path', '')
        ann_dir = self.data_prefix.get('seg_map_path', '')
        stems = sorted(
            name[:-len(self.seg_map_suffix)] for name in fileio.list_dir_or_file(
                ann_dir, list_dir=False, suffix=self.seg_map_suffix, backend_args=self.backend_args))
        return [
            dict(img_path=osp.join(img_dir, stem + self.img_suffix),
                 seg_map_path=osp.join(ann_dir, stem + self.seg_map_suffix),
                 label_map=self.label_map, reduce_zero_label=self.reduce_zero_label, seg_fields=[])
            for stem in stems
        ]
