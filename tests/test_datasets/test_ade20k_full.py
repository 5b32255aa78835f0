"""ADE20K-Full (847 classes): vocabulary, converter (on a fake official release) and dataset."""
import importlib.util
import json
import os
import os.path as osp
import pickle
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ..conftest import REPO_ROOT

CONVERTER = osp.join(REPO_ROOT, 'tools/dataset_converters/ade20k_full.py')
IDS_FILE = osp.join(REPO_ROOT, 'tools/dataset_converters/ade20k_847_ids.json')
RELEASE = 'ADE20K_2021_17_01'

# ADE class index -> expected train id. Indices are 1-based into index['objectnames'], 0 = unlabeled.
WALL, PERSON, PIER, ROBE, ADDING_MACHINE = 2978, 1831, 1857, 2432, 3148
HOUSING = 1279  # an ADE class (a part) that is not one of the 847
TRAIN_ID = {WALL: 0, PERSON: 11, PIER: 255, ROBE: 830, ADDING_MACHINE: 846, HOUSING: 65535, 0: 65535}
NAMES = {WALL: 'wall', PERSON: 'person, individual, someone, somebody, mortal, soul', PIER: 'pier',
         ROBE: 'sleeping robe', ADDING_MACHINE: 'adding machine, totalizer, totaliser', HOUSING: 'housing'}

# (split folder, scene folder, file name, (h, w), ADE class index per horizontal band)
SAMPLES = [
    ('training', 'urban/street', 'ADE_train_00000001.jpg', (520, 640), [WALL, PERSON, 0]),
    ('training', 'home_or_hotel/bedroom', 'ADE_train_00000002.jpg', (24, 32), [ROBE, HOUSING]),
    ('validation', 'urban/street', 'ADE_val_00000001.jpg', (32, 40), [WALL, ROBE, PIER, 0, HOUSING]),
    ('validation', 'cultural/museum/indoor', 'ADE_val_00000002.jpg', (40, 24), [ADDING_MACHINE, PERSON]),
]


def _bands(hw, classes):
    """(h, w) map of ADE class indices: one horizontal band per class."""
    rows = np.arange(hw[0]) * len(classes) // hw[0]
    return np.repeat(np.asarray(classes, np.int64)[rows][:, None], hw[1], axis=1)


def _encode_seg(index_map, rng):
    """ADE20K ``_seg.png`` encoding: R = index // 256 * 10 (+ 0..9), G = index % 256, B = instance."""
    r = index_map // 256 * 10 + rng.integers(0, 10, index_map.shape)  # R / 10 is floored when decoding
    g = index_map % 256
    b = rng.integers(0, 256, index_map.shape)
    return np.stack([r, g, b], -1).astype(np.uint8)


@pytest.fixture(scope='module')
def ade_release(tmp_path_factory):
    """A tiny folder laid out like the extracted ADE20K_2021_17_01.zip."""
    src = tmp_path_factory.mktemp('ade_src')
    rng = np.random.default_rng(0)
    objectnames = [f'object {i}' for i in range(3688)]
    for idx, name in NAMES.items():
        objectnames[idx - 1] = name
    folders, filenames = [], []
    for split, scene, name, hw, classes in SAMPLES:
        folder = f'{RELEASE}/images/ADE/{split}/{scene}'
        os.makedirs(src / folder)
        Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)).save(src / folder / name)
        seg = _encode_seg(_bands(hw, classes), rng)
        Image.fromarray(seg).save(src / folder / name.replace('.jpg', '_seg.png'))
        folders.append(folder)
        filenames.append(name)
    with open(src / RELEASE / 'index_ade20k.pkl', 'wb') as f:
        pickle.dump(dict(filename=filenames, folder=folders, objectnames=objectnames,
                         scene=['/street', '/bedroom', '/street', '/museum/indoor']), f)
    return src


@pytest.fixture(scope='module')
def converted_root(ade_release, tmp_path_factory):
    out = tmp_path_factory.mktemp('ade_full')
    proc = subprocess.run([sys.executable, CONVERTER, str(ade_release), '-o', str(out), '--nproc', '2'],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr
    return str(out)


def _load_converter():
    spec = importlib.util.spec_from_file_location('ade20k_full_converter', CONVERTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vocabulary_and_ids():
    from mmseg_digseg.datasets.vocabularies import load_vocabulary
    vocab = load_vocabulary('ade20k_847')
    assert len(vocab) == 847 and all(vocab) and len(set(vocab)) == 847
    with open(osp.join(REPO_ROOT, 'mmseg_digseg/datasets/vocabularies/ade20k_847.txt')) as f:
        assert f.readline().startswith('#')  # provenance header
    # spot checks against Mask2Former's ADE20K_SEM_SEG_FULL_CATEGORIES (name, id, trainId)
    with open(IDS_FILE) as f:
        ids = json.load(f)
    assert len(ids) == 847 and len(set(ids)) == 847
    for train_id, name, ade_id in [(0, 'wall', 2978), (1, 'building, edifice', 312),
                                   (11, 'person, individual, someone, somebody, mortal, soul', 1831),
                                   (150, 'blanket, cover', 206), (255, 'pier', 1857),
                                   (300, "altar, communion table, lord's table", 3108),
                                   (830, 'sleeping robe', 2432),
                                   (846, 'adding machine, totalizer, totaliser', 3148)]:
        assert vocab[train_id] == name and ids[train_id] == ade_id
    # ADE20K-150's classes are all among the 847 (a check against transcription typos)
    from mmseg.datasets import ADE20KDataset
    synonyms = {s.strip() for line in vocab for s in line.split(',')}
    assert {c.strip() for c in ADE20KDataset.METAINFO['classes']} <= synonyms


def test_converter_labels(converted_root):
    root = osp.join(converted_root, RELEASE)
    for split, _, name, hw, classes in SAMPLES:
        img = Image.open(osp.join(root, 'images_detectron2', split, name))
        with Image.open(osp.join(root, 'annotations_detectron2', split, name.replace('.jpg', '.tif'))) as tif:
            label = np.array(tif)
        assert label.dtype == np.uint16
        if min(hw) > 512:  # short side resized to 512, labels with nearest neighbour
            assert img.size == (630, 512) and label.shape == (512, 630)  # round(640 / 520 * 512) = 630
            assert set(np.unique(label).tolist()) == {TRAIN_ID[c] for c in classes}
            assert label[0, 0] == 0 and label[-1, -1] == 65535
        else:
            assert img.size == hw[::-1]
            expected = np.vectorize(TRAIN_ID.get)(_bands(hw, classes))
            np.testing.assert_array_equal(label, expected)


def test_converter_missing_index(tmp_path):
    with pytest.raises(SystemExit, match='ADE20K_2021_17_01.zip'):
        _load_converter().main([str(tmp_path)])


def test_dataset(converted_root):
    from mmseg.registry import DATASETS
    import mmseg_digseg.datasets.ade20k_full  # noqa: F401  (registers ADE20KFull847Dataset)
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadWideAnnotations'), dict(type='PackSegInputs')]
    ds = DATASETS.build(dict(type='ADE20KFull847Dataset', data_root=converted_root, pipeline=pipeline))
    assert len(ds) == 2  # default split: validation
    assert len(ds.METAINFO['classes']) == 847 == len(ds.metainfo['palette'])
    assert ds.METAINFO['classes'][:3] == ('wall', 'building', 'sky') and ds.ignore_index == 65535

    sample = ds[0]  # ADE_val_00000001: wall, sleeping robe, pier, unlabeled, unmapped class
    gt = sample['data_samples'].gt_sem_seg.data[0].numpy()
    np.testing.assert_array_equal(gt, np.vectorize(TRAIN_ID.get)(_bands((32, 40), SAMPLES[2][4])))
    assert {830, 255, 65535} <= set(np.unique(gt).tolist())

    train = DATASETS.build(dict(
        type='ADE20KFull847Dataset', data_root=converted_root, pipeline=pipeline,
        data_prefix=dict(img_path=f'{RELEASE}/images_detectron2/training',
                         seg_map_path=f'{RELEASE}/annotations_detectron2/training')))
    assert len(train) == 2 and train[0]['data_samples'].gt_sem_seg.data.shape[-2:] == (512, 630)

    with pytest.raises(ValueError, match='subsets'):
        DATASETS.build(dict(type='ADE20KFull847Dataset', data_root=converted_root, pipeline=pipeline,
                            metainfo=dict(classes=('wall', 'sky'))))
