"""SynthShapes: rendering, on-disk generation (determinism, layout, idempotence) and the dataset."""
import json
import os
import os.path as osp

import numpy as np
from PIL import Image

from mmseg_digseg.datasets.synth_shapes import (CLASSES, PALETTE, SynthShapesDataset, generate_synth_shapes,
                                                render_sample)


def _read_split(root, split):
    """{stem: (img bytes, ann bytes)} of one split."""
    out = {}
    for name in sorted(os.listdir(osp.join(root, 'img_dir', split))):
        with open(osp.join(root, 'img_dir', split, name), 'rb') as f:
            img = f.read()
        with open(osp.join(root, 'ann_dir', split, name), 'rb') as f:
            ann = f.read()
        out[name] = (img, ann)
    return out


def test_render_sample_types_and_values():
    img, label = render_sample(np.random.default_rng(0))
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert label.shape == (64, 64) and label.dtype == np.uint8
    assert label.max() <= len(CLASSES) - 1
    assert (label > 0).any(), 'every image has at least one object'
    img, label = render_sample(np.random.default_rng(0), size=96)
    assert img.shape == (96, 96, 3) and label.shape == (96, 96)


def test_render_sample_deterministic():
    a_img, a_lab = render_sample(np.random.default_rng(7))
    b_img, b_lab = render_sample(np.random.default_rng(7))
    c_img, c_lab = render_sample(np.random.default_rng(8))
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    assert not np.array_equal(a_img, c_img)


def test_classes_and_palette():
    assert CLASSES == ('background', 'disc', 'square', 'triangle', 'cross', 'ring')
    assert len(PALETTE) == len(CLASSES)
    assert len({tuple(c) for c in PALETTE}) == len(CLASSES)
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in PALETTE)


def test_all_classes_appear_and_are_sizeable():
    rng = np.random.default_rng(123)
    counts = np.zeros(len(CLASSES), np.int64)
    for _ in range(60):
        _, label = render_sample(rng)
        counts += np.bincount(label.ravel(), minlength=len(CLASSES))
    assert (counts > 0).all(), counts
    # Foreground is a real share of the pixels (objects are 14-30 px across), not specks.
    assert 0.08 < counts[1:].sum() / counts.sum() < 0.5, counts


def test_colour_alone_does_not_identify_the_class():
    """Object colours are random per instance: the mean colour of one class varies widely."""
    rng = np.random.default_rng(5)
    means = []
    while len(means) < 8:
        img, label = render_sample(rng)
        if (label == 1).sum() > 50:
            means.append(img[label == 1].mean(axis=0))
    assert np.ptp(np.stack(means), axis=0).max() > 60


def test_textures_are_high_contrast():
    rng = np.random.default_rng(9)
    for _ in range(10):
        img, label = render_sample(rng)
        for c in np.unique(label):
            if c == 0 or (label == c).sum() < 60:
                continue
            luma = img[label == c].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
            assert luma.std() > 25, f'class {CLASSES[c]} looks flat'


def test_generate_layout_and_values(tmp_path):
    root = generate_synth_shapes(str(tmp_path / 'ds'), num_train=6, num_val=3, seed=0)
    assert root == str(tmp_path / 'ds')
    for split, n in (('train', 6), ('val', 3)):
        names = sorted(os.listdir(osp.join(root, 'img_dir', split)))
        assert names == [f'{i:05d}.png' for i in range(n)]
        assert sorted(os.listdir(osp.join(root, 'ann_dir', split))) == names
        for name in names:
            img = Image.open(osp.join(root, 'img_dir', split, name))
            ann = Image.open(osp.join(root, 'ann_dir', split, name))
            assert img.mode == 'RGB' and img.size == (64, 64)
            assert ann.mode == 'L' and ann.size == (64, 64)
            assert np.asarray(ann).max() <= len(CLASSES) - 1
    meta = json.load(open(osp.join(root, 'meta.json')))
    assert (meta['num_train'], meta['num_val'], meta['size'], meta['seed']) == (6, 3, 64, 0)


def test_generate_deterministic(tmp_path):
    a = generate_synth_shapes(str(tmp_path / 'a'), num_train=6, num_val=3, seed=0)
    b = generate_synth_shapes(str(tmp_path / 'b'), num_train=6, num_val=3, seed=0)
    c = generate_synth_shapes(str(tmp_path / 'c'), num_train=6, num_val=3, seed=1)
    for split in ('train', 'val'):
        assert _read_split(a, split) == _read_split(b, split)
        sa, sc = _read_split(a, split), _read_split(c, split)
        assert all(sa[k] != sc[k] for k in sa), 'another seed gives other images'
    # train and val are different samples
    assert _read_split(a, 'train')['00000.png'] != _read_split(a, 'val')['00000.png']
    # the PNGs hold exactly what render_sample draws (lossless)
    img = np.asarray(Image.open(osp.join(a, 'img_dir', 'train', '00002.png')))
    ann = np.asarray(Image.open(osp.join(a, 'ann_dir', 'train', '00002.png')))
    ref_img, ref_ann = render_sample(np.random.default_rng([0, 0, 2]))
    np.testing.assert_array_equal(img, ref_img)
    np.testing.assert_array_equal(ann, ref_ann)


def test_generate_idempotent_and_regenerates_on_change(tmp_path):
    root = str(tmp_path / 'ds')
    generate_synth_shapes(root, num_train=6, num_val=3, seed=0)
    files = [osp.join(root, d, s, n) for d in ('img_dir', 'ann_dir') for s in ('train', 'val')
             for n in os.listdir(osp.join(root, d, s))]
    files.append(osp.join(root, 'meta.json'))
    # Backdate everything: a rewrite would bring the mtimes back to now.
    for f in files:
        os.utime(f, (1_000_000, 1_000_000))
    generate_synth_shapes(root, num_train=6, num_val=3, seed=0)
    assert all(os.stat(f).st_mtime == 1_000_000 for f in files)

    # Other parameters: regenerated, stale files of the larger split removed.
    generate_synth_shapes(root, num_train=4, num_val=3, seed=0)
    assert sorted(os.listdir(osp.join(root, 'img_dir', 'train'))) == [f'{i:05d}.png' for i in range(4)]
    assert sorted(os.listdir(osp.join(root, 'ann_dir', 'train'))) == [f'{i:05d}.png' for i in range(4)]
    assert json.load(open(osp.join(root, 'meta.json')))['num_train'] == 4
    assert os.stat(osp.join(root, 'img_dir', 'train', '00000.png')).st_mtime != 1_000_000

    # An interrupted generation (missing files) is completed, not trusted.
    os.remove(osp.join(root, 'img_dir', 'val', '00002.png'))
    generate_synth_shapes(root, num_train=4, num_val=3, seed=0)
    assert osp.isfile(osp.join(root, 'img_dir', 'val', '00002.png'))


def test_dataset_class(tmp_path):
    root = generate_synth_shapes(str(tmp_path / 'ds'), num_train=6, num_val=3, seed=0)
    for split, n in (('train', 6), ('val', 3)):
        ds = SynthShapesDataset(
            data_root=root, data_prefix=dict(img_path=f'img_dir/{split}', seg_map_path=f'ann_dir/{split}'),
            pipeline=[])
        assert len(ds) == n
        assert ds.metainfo['classes'] == CLASSES
        assert [list(c) for c in ds.metainfo['palette']] == PALETTE
        info = ds[0]
        assert osp.basename(info['img_path']) == osp.basename(info['seg_map_path']) == '00000.png'
        assert info['reduce_zero_label'] is False


def test_dataset_registered():
    from mmseg.registry import DATASETS
    assert DATASETS.get('SynthShapesDataset') is SynthShapesDataset
