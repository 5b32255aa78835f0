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

from mmengine import fileio
from mmseg.registry import DATASETS

from .wide_label_dataset import WideLabelSegDataset, vocabulary_metainfo


@DATASETS.register_module()
class PascalContext459Dataset(WideLabelSegDataset):
    """PASCAL-Context with 459 classes (see the module docstring for the layout)."""

    METAINFO = vocabulary_metainfo('pascal_context_459', seed=459)

    def __init__(self,
                 data_prefix=dict(
                     img_path='VOCdevkit/VOC2010/JPEGImages',
                     seg_map_path='VOCdevkit/VOC2010/annotations_detectron2/pc459_val'),
                 **kwargs):
        super().__init__(data_prefix=data_prefix, **kwargs)

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
