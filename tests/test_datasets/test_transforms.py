import numpy as np
import pytest
from PIL import Image

from mmseg_digseg.datasets import LoadImageAsBGR8


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
