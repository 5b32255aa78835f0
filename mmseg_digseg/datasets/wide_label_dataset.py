"""Datasets whose label files hold 16-bit train ids (65535 = unlabeled) and whose classes are a pinned
vocabulary: ADE20K-Full (847 classes) and PASCAL-Context-459."""
from typing import Optional, Sequence

import numpy as np
from mmseg.datasets import BaseSegDataset

from .vocabularies import load_vocabulary

IGNORE_INDEX = 65535


def vocabulary_metainfo(name: str, seed: int) -> dict:
    """Class names = the first synonym of each vocabulary line; seeded random colours (deterministic,
    distinct enough for hundreds of classes)."""
    classes = tuple(line.split(',')[0].strip() for line in load_vocabulary(name))
    palette = np.random.default_rng(seed).integers(0, 256, (len(classes), 3)).tolist()
    return dict(classes=classes, palette=palette)


class WideLabelSegDataset(BaseSegDataset):
    """``BaseSegDataset`` for 16-bit label files of train ids: load them with ``LoadWideAnnotations``
    (MMSeg's ``LoadAnnotations`` casts to uint8) and evaluate with ``ignore_index=65535``."""

    def __init__(self, img_suffix='.jpg', seg_map_suffix='.tif', reduce_zero_label=False,
                 ignore_index=IGNORE_INDEX, **kwargs):
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         reduce_zero_label=reduce_zero_label, ignore_index=ignore_index, **kwargs)

    @classmethod
    def get_label_map(cls, new_classes: Optional[Sequence] = None):
        """Always ``None``: the label files hold train ids, whatever the classes are called.

        Renaming all classes (e.g. to the full synonym lines) is fine. Subsets are refused: MMSeg would
        map the dropped classes to 255, a real class here, and first synonyms may repeat (ADE20K-Full has
        three 'bag' classes), so a class cannot be picked by name.
        """
        num_classes = len(cls.METAINFO['classes'])
        if new_classes is not None and len(new_classes) != num_classes:
            raise ValueError(f'{cls.__name__} takes all {num_classes} classes in train-id order (names may '
                             f'differ), got {len(new_classes)}; class subsets are not supported.')
        return None
