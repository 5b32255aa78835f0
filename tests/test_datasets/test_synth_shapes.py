"""SynthShapes: rendering, on-disk generation (determinism, layout, idempotence) and the datasets,
6-class ('basic') and 49-class ('many')."""
import hashlib
import json
import os
import os.path as osp
import time

import numpy as np
import pytest
from PIL import Image

from mmseg_digseg.datasets.synth_shapes import (CLASSES, MANY_CLASSES, MANY_PALETTE, PALETTE, SynthShapesDataset,
                                                SynthShapesManyDataset, describe_scene, generate_synth_shapes,
                                                paint_many_object, render_sample, render_scene)

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


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
    files += [osp.join(root, 'meta.json'), osp.join(root, 'captions.json')]
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


def test_basic_output_unchanged_by_the_many_class_variant():
    """Recorded by hand from the generator before the many-class variant was added: the 6-class
    data of a given seed stays byte for byte what it was."""
    recorded = {  # rng seed: (sha256[:16] of the image bytes, of the label bytes, img[32, 32], label counts)
        (0, 0, 0): ('5c5afc906b4f7d7f', '3df9283afee9891a', [207, 170, 244], [3188, 0, 474, 0, 0, 434]),
        (0, 0, 2): ('2a29bf6256113a28', '042096805d88bcf2', [58, 36, 237], [3624, 0, 256, 0, 0, 216]),
        (0, 1, 0): ('9e4888f046996fd8', '52150bb9a18f7e20', [179, 128, 170], [3388, 0, 0, 233, 0, 475]),
        (0, 1, 5): ('2e4bcf22506ff953', 'c736ac862474cc39', [59, 33, 7], [3119, 536, 0, 0, 441, 0]),
    }
    for seed, (img_hash, label_hash, centre, counts) in recorded.items():
        img, label = render_sample(np.random.default_rng(list(seed)))
        assert hashlib.sha256(img.tobytes()).hexdigest()[:16] == img_hash, seed
        assert hashlib.sha256(label.tobytes()).hexdigest()[:16] == label_hash, seed
        assert img[32, 32].tolist() == centre
        assert np.bincount(label.ravel(), minlength=6).tolist() == counts


def test_many_classes_and_palette():
    assert len(MANY_CLASSES) == 49 and MANY_CLASSES[0] == 'background'
    # class 1 + 8 * shape + texture, named '<texture> <shape>' (read as prompts)
    assert MANY_CLASSES[1] == 'solid disc'
    assert MANY_CLASSES[22] == 'checkered triangle'
    assert MANY_CLASSES[48] == 'speckled ring'
    assert len(set(MANY_CLASSES)) == 49
    assert len(MANY_PALETTE) == 49 and len({tuple(c) for c in MANY_PALETTE}) == 49
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in MANY_PALETTE)


def test_many_paint_matches_hand_checked_textures():
    white, black = np.full(3, 255.0), np.zeros(3)

    def paint(name, extent, phase=(0, 0)):
        img, label = np.full((64, 64, 3), 128.0), np.zeros((64, 64), np.uint8)
        paint_many_object(img, label, MANY_CLASSES.index(name), 32, 32, extent, (white, black), phase)
        return img[..., 0], label

    # A 12 px square centred at (32, 32) covers rows/columns 26..37; vertical stripes of period 6
    # (3 px of colour 1 from x = 0): columns 24-26, 30-32, 36-38 are white.
    img, label = paint('vertically striped square', 12)
    expected = np.zeros((64, 64), np.uint8)
    expected[26:38, 26:38] = MANY_CLASSES.index('vertically striped square')
    np.testing.assert_array_equal(label, expected)
    row = [255, 0, 0, 0, 255, 255, 255, 0, 0, 0, 255, 255]
    np.testing.assert_array_equal(img[26:38, 26:38], np.tile(row, (12, 1)))
    assert (img[label == 0] == 128).all()
    # A phase of one column moves the stripes one column to the left.
    img, _ = paint('vertically striped square', 12, phase=(0, 1))
    np.testing.assert_array_equal(img[30, 26:38], [0, 0, 0, 255, 255, 255, 0, 0, 0, 255, 255, 255])
    # Horizontal stripes: the transpose.
    img, _ = paint('horizontally striped square', 12)
    np.testing.assert_array_equal(img[26:38, 26:38], np.tile(row, (12, 1)).T)
    # Dots: 4x4 blocks where y % 7 and x % 7 are in 2..5; a 24 px square (rows/columns 20..43)
    # holds 3 x 3 of them (at 23-26, 30-33, 37-40; those at 16-19 and 44-47 lie outside).
    img, label = paint('dotted square', 24)
    assert (label > 0).sum() == 24 * 24 and (img == 255).sum() == 9 * 16
    assert (img[23:27, 23:27] == 255).all() and img[22, 23] == 0 and img[27, 23] == 0
    # Checkered: 4 px cells.
    img, _ = paint('checkered square', 24)
    np.testing.assert_array_equal(img[20, 20:30], [255, 255, 255, 255, 0, 0, 0, 0, 255, 255])
    np.testing.assert_array_equal(img[24, 20:30], [0, 0, 0, 0, 255, 255, 255, 255, 0, 0])
    # Bullseye: rings 3 px wide around the centre (distances 0-3 white, 3-6 black, 6-9 white).
    img, _ = paint('bullseye disc', 24)
    assert img[31, 31] == 255 and img[31, 36] == 0 and img[31, 38] == 255
    # A diamond of extent 10: |dy| + |dx| <= 5 over pixel centres is 4 x 15 pixels; solid: one colour.
    img, label = paint('solid diamond', 10)
    assert (label == MANY_CLASSES.index('solid diamond')).sum() == 60 and (img[label > 0] == 255).all()
    with pytest.raises(ValueError, match='not a many-variant foreground class'):
        paint_many_object(np.zeros((8, 8, 3)), np.zeros((8, 8), np.uint8), 49, 4, 4, 4, (white, black), (0, 0))


def test_many_images_hold_2_to_5_classes_with_random_colours():
    counts = np.zeros(len(MANY_CLASSES), np.int64)
    class_colours = {}
    for i in range(150):
        img, label, caption = render_scene(np.random.default_rng([3, i]), variant='many')
        assert img.shape == (64, 64, 3) and label.dtype == np.uint8
        present = [int(c) for c in np.unique(label) if c > 0]
        assert 2 <= len(present) <= 5, present
        area = np.bincount(label.ravel(), minlength=len(MANY_CLASSES))
        assert area[present].min() >= 60, 'every object stays large enough to read its texture'
        counts += area
        # The caption names exactly the classes of the label map (distinct classes, one each).
        assert caption.endswith(' on a smooth background')
        assert sorted(caption[:-len(' on a smooth background')].replace(', ', ' and ').split(' and ')) \
            == sorted(f'a {MANY_CLASSES[c]}' for c in present)
        for c in present:
            class_colours.setdefault(c, []).append(img[label == c].mean(axis=0))
    assert (counts[1:] > 0).all(), 'all 48 classes appear'
    # Colours are random per instance: the mean colour of a class varies widely.
    spread = [np.ptp(np.stack(m), axis=0).max() for m in class_colours.values() if len(m) >= 4]
    assert len(spread) >= 20 and min(spread) > 60


def test_describe_scene():
    assert describe_scene(['dotted disc']) == 'a dotted disc on a smooth background'
    assert describe_scene(['solid cross', 'dotted disc', 'solid cross']) == \
        'two solid crosses and a dotted disc on a smooth background'
    assert describe_scene(['a', 'b', 'c']) == 'an a, a b and a c on a smooth background'
    assert describe_scene([]) == 'a smooth background'
    # The basic variant names its classes by their fixed textures, e.g. discs are horizontally striped.
    assert render_scene(np.random.default_rng([0, 1, 5]))[2] == \
        'a diagonally striped cross and two horizontally striped discs on a smooth background'


def test_generate_many_layout_captions_and_speed(tmp_path):
    start = time.perf_counter()
    root = generate_synth_shapes(str(tmp_path / 'many'), num_train=40, num_val=4, seed=0, variant='many')
    seconds = time.perf_counter() - start
    assert seconds < 5, f'40 + 4 images took {seconds:.1f} s'
    meta = json.load(open(osp.join(root, 'meta.json')))
    assert meta['variant'] == 'many' and meta['classes'] == list(MANY_CLASSES)
    captions = json.load(open(osp.join(root, 'captions.json')))
    assert sorted(captions) == ['train', 'val']
    assert sorted(captions['train']) == sorted(os.listdir(osp.join(root, 'img_dir', 'train')))
    assert len(captions['train']) == 40 and len(captions['val']) == 4
    img, label, caption = render_scene(np.random.default_rng([0, 1, 3]), variant='many')
    assert captions['val']['00003.png'] == caption
    np.testing.assert_array_equal(np.asarray(Image.open(osp.join(root, 'img_dir', 'val', '00003.png'))), img)
    np.testing.assert_array_equal(np.asarray(Image.open(osp.join(root, 'ann_dir', 'val', '00003.png'))), label)
    # The basic variant writes its captions too, and keeps its meta.json as before (no 'variant').
    basic = generate_synth_shapes(str(tmp_path / 'basic'), num_train=2, num_val=1, seed=0)
    assert 'variant' not in json.load(open(osp.join(basic, 'meta.json')))
    assert json.load(open(osp.join(basic, 'captions.json')))['train']['00000.png'] == \
        'a vertically striped ring and a checkered square on a smooth background'
    with pytest.raises(ValueError, match="unknown SynthShapes variant 'huge'"):
        generate_synth_shapes(str(tmp_path / 'bad'), num_train=1, num_val=1, variant='huge')


def test_many_dataset_from_base_config(tmp_path):
    from mmengine.config import Config
    from mmseg.registry import DATASETS
    root = generate_synth_shapes(str(tmp_path / 'many'), num_train=3, num_val=2, seed=0, variant='many')
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs/_base_/datasets/synth_shapes_many.py'))
    basic_cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs/_base_/datasets/synth_shapes.py'))
    assert cfg.train_pipeline == basic_cfg.train_pipeline and cfg.test_pipeline == basic_cfg.test_pipeline
    assert DATASETS.get('SynthShapesManyDataset') is SynthShapesManyDataset
    for loader, n in ((cfg.train_dataloader, 3), (cfg.val_dataloader, 2)):
        loader.dataset.data_root = root
        ds = DATASETS.build(loader.dataset)
        assert isinstance(ds, SynthShapesManyDataset) and len(ds) == n
        assert ds.metainfo['classes'] == MANY_CLASSES
        sample = ds[0]
        assert tuple(sample['inputs'].shape) == (3, 64, 64)
        seg = sample['data_samples'].gt_sem_seg.data
        label = np.asarray(Image.open(ds.get_data_info(0)['seg_map_path']))
        assert sorted(seg.unique().tolist()) == sorted(np.unique(label).tolist())
