"""Loading what users have: grayscale, RGBA and 16-bit images become 8-bit colour; label ids above 255 survive."""
import mmcv
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine import fileio
from mmengine.logging import print_log

from mmseg.datasets.transforms import LoadAnnotations
from mmseg.registry import TRANSFORMS


def to_bgr8(img: np.ndarray) -> tuple:
    """Any 2-D or 3-D image array -> (H, W, 3) uint8 (BGR order kept), with what was converted."""
    notes = []
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise ValueError(f'Expected an image of shape (H, W) or (H, W, C), got {img.shape}.')
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0).round().astype(np.uint8)
        notes.append('16-bit -> 8-bit')
    elif img.dtype.kind == 'f':
        scale = 255.0 if img.max() <= 1.0 else 1.0
        img = (img.astype(np.float32) * scale).clip(0, 255).round().astype(np.uint8)
        notes.append('float -> 8-bit')
    elif img.dtype != np.uint8:
        raise ValueError(f'Unsupported image dtype {img.dtype}: convert to uint8 or uint16.')
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
        notes.append('grayscale -> 3 channels')
    elif img.shape[2] == 4:
        img = np.ascontiguousarray(img[..., :3])
        notes.append('alpha channel dropped')
    elif img.shape[2] != 3:
        raise ValueError(f'Images need 1, 3 or 4 channels, got {img.shape[2]}.')
    return img, notes


@TRANSFORMS.register_module()
class LoadImageAsBGR8(LoadImageFromFile):
    """``LoadImageFromFile`` that reads the file unchanged, then converts it to 8-bit 3-channel.

    Grayscale, RGBA and 16-bit images are converted (logged once per kind) instead of failing later
    in normalisation. Also accepts an in-memory array under ``results['img']`` (inference API).
    """
    _logged = set()

    def __init__(self, **kwargs):
        kwargs.setdefault('color_type', 'unchanged')
        super().__init__(**kwargs)

    def transform(self, results: dict) -> dict:
        if results.get('img') is None:
            results = super().transform(results)
            if results is None:
                return None
        img, notes = to_bgr8(results['img'])
        for note in notes:
            if note not in self._logged:
                self._logged.add(note)
                print_log(f'Converted input images ({note}); e.g. {results.get("img_path")}.', 'current')
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results


@TRANSFORMS.register_module()
class LoadWideAnnotations(LoadAnnotations):
    """``LoadAnnotations`` that keeps label ids above 255 (16-bit label files).

    MMSeg's loader casts labels to uint8, which folds ADE20K-full's 847 and PASCAL-Context's 459
    classes onto 256 values. Here labels stay int64: 8-bit files keep 255 as "ignore", 16-bit ones
    (ADE20K-full, PASCAL-Context-459) use 65535. With ``reduce_zero_label``, 0 becomes ``ignore_index``
    (255 for MMSeg's 8-bit datasets) and the other ids move down by one, as MMSeg does.
    """

    def __init__(self, ignore_index: int = 65535, **kwargs):
        super().__init__(**kwargs)
        self.ignore_index = ignore_index

    def _load_seg_map(self, results: dict) -> None:
        img_bytes = fileio.get(results['seg_map_path'], backend_args=self.backend_args)
        label = mmcv.imfrombytes(img_bytes, flag='unchanged', backend=self.imdecode_backend)
        if label.ndim != 2:
            raise ValueError(f'Label file {results["seg_map_path"]} has shape {label.shape}; expected a '
                             'single-channel (H, W) image of class ids.')
        label = label.astype(np.int64)
        if self.reduce_zero_label is None:
            self.reduce_zero_label = results['reduce_zero_label']
        if self.reduce_zero_label:  # 0 ("other") becomes ignored; ignored pixels stay ignored
            label = np.where((label == 0) | (label == self.ignore_index), self.ignore_index, label - 1)
        label_map = results.get('label_map')
        if label_map:  # a class subset of the dataset: look the ids up all at once
            lookup = np.arange(max(label.max(), max(label_map)) + 1)
            for old_id, new_id in label_map.items():
                lookup[old_id] = new_id
            label = lookup[label]
        results['gt_seg_map'] = label
        results['seg_fields'].append('gt_seg_map')
