import numpy as np
import pytest
from PIL import Image

from mmseg_digseg.datasets import LoadImageAsBGR8, LoadWideAnnotations


def write(tmp_path, name, array, mode=None):
    path = str(tmp_path / name)
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


@pytest.mark.parametrize('kind', ['gray', 'rgba', 'gray16', 'rgb'])
def test_loaded_images_are_8bit_bgr(tmp_path, kind):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (20, 24), dtype=np.uint8)
    if kind == 'gray':
        path, expected = write(tmp_path, 'g.png', gray), np.repeat(gray[..., None], 3, 2)
    elif kind == 'rgba':
        rgba = np.concatenate([rgb, np.full((20, 24, 1), 128, np.uint8)], 2)
        path, expected = write(tmp_path, 'a.png', rgba), rgb[..., ::-1]
    elif kind == 'gray16':
        g16 = gray.astype(np.uint16) * 257
        path, expected = write(tmp_path, 'g16.png', g16), np.repeat(gray[..., None], 3, 2)
    else:
        path, expected = write(tmp_path, 'c.png', rgb), rgb[..., ::-1]
    results = LoadImageAsBGR8()(dict(img_path=path))
    assert results['img'].dtype == np.uint8 and results['img'].shape == (20, 24, 3)
    np.testing.assert_array_equal(results['img'], expected)
    assert results['ori_shape'] == (20, 24)


def test_in_memory_arrays_and_bad_shapes():
    out = LoadImageAsBGR8()(dict(img=np.zeros((8, 8), np.uint16), img_path=None))
    assert out['img'].shape == (8, 8, 3) and out['img'].dtype == np.uint8
    with pytest.raises(ValueError, match='1, 3 or 4 channels'):
        LoadImageAsBGR8()(dict(img=np.zeros((8, 8, 2), np.uint8), img_path=None))


@pytest.mark.parametrize('suffix', ['.png', '.tif'])
def test_wide_annotations_keep_ids_above_255(tmp_path, suffix):
    import cv2
    from mmseg.datasets.transforms import LoadAnnotations
    label = np.array([[0, 300, 846], [255, 65535, 7]], np.uint16)
    path = str(tmp_path / f'label{suffix}')
    cv2.imwrite(path, label)

    def load(transform, **results):
        return transform(dict(seg_map_path=path, seg_fields=[], reduce_zero_label=False, **results))['gt_seg_map']

    out = load(LoadWideAnnotations())
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, label)
    assert load(LoadAnnotations()).max() <= 255  # MMSeg's loader folds them (the reason for this one)
    # reduce_zero_label: 0 -> ignore, ignore stays ignore, the rest move down by one
    reduced = LoadWideAnnotations(reduce_zero_label=True)(
        dict(seg_map_path=path, seg_fields=[], reduce_zero_label=True))['gt_seg_map']
    np.testing.assert_array_equal(reduced, [[65535, 299, 845], [254, 65535, 6]])
    # a class subset of the dataset (label_map): unknown classes -> 255 as in MMSeg
    np.testing.assert_array_equal(load(LoadWideAnnotations(), label_map={300: 0, 846: 255}),
                                  [[0, 0, 255], [255, 65535, 7]])
