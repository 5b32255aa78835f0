"""The converters of the cross-domain projects, on fixtures laid out like the official archives: output
pixels, splits, and the message when the download is missing."""
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest

from ..conftest import REPO_ROOT
from .official_layouts import deepglobe_release, monuseg_release, phenobench_release, write_monuseg_xml


def load_converter(name):
    spec = importlib.util.spec_from_file_location(f'{name}_converter',
                                                  osp.join(REPO_ROOT, 'tools/dataset_converters', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


deepglobe = load_converter('deepglobe_road')
monuseg = load_converter('monuseg')
phenobench = load_converter('phenobench')


def files(folder):
    return sorted(os.listdir(folder)) if osp.isdir(folder) else []


def test_deepglobe_road_binarises_masks_and_splits(tmp_path):
    labels = deepglobe_release(str(tmp_path / 'release'))
    out = tmp_path / 'deepglobe_road'
    deepglobe.main([str(tmp_path / 'release'), '-o', str(out), '--nproc', '1'])
    splits = {s: [f[:-4] for f in files(out / 'ann_dir' / s)] for s in ('train', 'val', 'test')}
    assert [len(splits[s]) for s in ('train', 'val', 'test')] == [7, 1, 2]  # 10 tiles, ratios 0.1 / 0.2
    assert sorted(sum(splits.values(), [])) == sorted(labels)  # each tile once; valid/ (no masks) unused
    for split, ids in splits.items():
        assert files(out / 'img_dir' / split) == [f'{i}.jpg' for i in ids]
        for i in ids:
            label = cv2.imread(str(out / 'ann_dir' / split / f'{i}.png'), cv2.IMREAD_UNCHANGED)
            assert label.dtype == np.uint8 and label.ndim == 2
            np.testing.assert_array_equal(label, labels[i])  # 200..255 -> 1, 0..39 -> 0
            with open(tmp_path / 'release' / 'train' / f'{i}_sat.jpg', 'rb') as a, \
                    open(out / 'img_dir' / split / f'{i}.jpg', 'rb') as b:
                assert a.read() == b.read()  # the tile itself, not re-encoded
    # the same seed gives the same split; a split directory is honoured
    again = tmp_path / 'again'
    deepglobe.main([str(tmp_path / 'release'), '-o', str(again), '--nproc', '1'])
    assert files(again / 'ann_dir' / 'test') == files(out / 'ann_dir' / 'test')
    split_dir = tmp_path / 'splits'
    split_dir.mkdir()
    ids = sorted(labels)
    for name, part in (('train', ids[:5]), ('val', ids[5:6]), ('test', ids[6:])):
        (split_dir / f'{name}.txt').write_text('\n'.join(part) + '\n')
    given = tmp_path / 'given'
    deepglobe.main([str(tmp_path / 'release'), '-o', str(given), '--split-dir', str(split_dir), '--nproc', '1'])
    assert files(given / 'ann_dir' / 'test') == [f'{i}.png' for i in ids[6:]]


def test_deepglobe_road_missing_release_names_the_archive(tmp_path):
    """From the command line: exit with a message naming the archive, where to get it, where to put it."""
    result = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools/dataset_converters/deepglobe_road.py'),
                             str(tmp_path / 'nothing'), '-o', str(tmp_path / 'out')],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert 'DeepGlobe Road Extraction' in result.stderr and 'kaggle.com' in result.stderr
    assert 'archive.zip' in result.stderr and str(tmp_path / 'nothing') in result.stderr
    assert 'Traceback' not in result.stderr


def test_monuseg_fills_xml_polygons(tmp_path):
    polygons = monuseg_release(str(tmp_path / 'release'))
    out = tmp_path / 'monuseg'
    monuseg.main([str(tmp_path / 'release'), '-o', str(out), '--num-val', '1'])
    splits = {s: [f[:-4] for f in files(out / 'ann_dir' / s)] for s in ('train', 'val', 'test')}
    assert [len(splits[s]) for s in ('train', 'val', 'test')] == [4, 1, 2]
    assert all(stem.startswith('TCGA-0') and int(stem[5:7]) >= 5 for stem in splits['test'])  # the test archive
    for split, stems in splits.items():
        for stem in stems:
            label = cv2.imread(str(out / 'ann_dir' / split / f'{stem}.png'), cv2.IMREAD_UNCHANGED)
            expected = np.zeros((125, 125), np.uint8)
            for p in polygons[stem]:  # the octagons are convex: the union of their fills, one at a time
                expected |= cv2.fillPoly(np.zeros_like(expected), [np.round(p).astype(np.int32)], 1)
            np.testing.assert_array_equal(label, expected)
            tif_dir = ('MoNuSegTestData' if split == 'test' else 'MoNuSeg 2018 Training Data/Tissue Images')
            np.testing.assert_array_equal(cv2.imread(str(out / 'img_dir' / split / f'{stem}.png')),
                                          cv2.imread(str(tmp_path / 'release' / tif_dir / f'{stem}.tif')))


def test_monuseg_polygon_pixels_by_hand(tmp_path):
    """A 10x10 square with fractional corners and a right triangle: which pixels become nucleus."""
    xml = tmp_path / 'a.xml'
    square = [(10.4, 10.2), (19.6, 10.4), (20.2, 19.7), (9.8, 20.4)]  # rounds to (10,10)-(20,20)
    triangle = [(40, 40), (50, 40), (40, 50)]
    write_monuseg_xml(str(xml), [np.array(square), np.array(triangle), np.array([(1, 1), (2, 2)])])
    polygons = monuseg.polygons_from_xml(str(xml))
    assert len(polygons) == 2  # a 2-vertex region is not a nucleus
    mask = monuseg.rasterise(polygons, 64, 64)
    assert mask[10:21, 10:21].all() and mask[10:21, 10:21].sum() == 121  # edges included
    assert mask[9, 10:21].sum() == 0 and mask[21, 10:21].sum() == 0 and mask[10:21, 21].sum() == 0
    # the triangle x >= 40, y >= 40, x + y <= 90: rows of 11, 10, ..., 1 pixels
    assert [int(mask[y, 35:60].sum()) for y in range(40, 51)] == list(range(11, 0, -1))
    assert mask.sum() == 121 + 66 and set(np.unique(mask)) == {0, 1}


def test_monuseg_overlapping_and_self_crossing_outlines_are_filled_whole(tmp_path):
    """Two overlapping squares merge; one outline that goes round two overlapping squares (crossing itself)
    covers both. An even-odd fill (one cv2.fillPoly call, or cv2.fillPoly of the self-crossing outline)
    leaves the overlaps' inner pixels empty."""
    xml = tmp_path / 'a.xml'
    first, second = [(30, 30), (36, 30), (36, 36), (30, 36)], [(33, 33), (39, 33), (39, 39), (33, 39)]
    twice_round = [(10, 10), (16, 10), (16, 16), (10, 16), (10, 10), (13, 13), (19, 13), (19, 19), (13, 19),
                   (13, 13)]
    write_monuseg_xml(str(xml), [np.array(first), np.array(second), np.array(twice_round)])
    mask = monuseg.rasterise(monuseg.polygons_from_xml(str(xml)), 64, 64)
    expected = np.zeros((64, 64), np.uint8)  # by hand: squares with their edges, rows/columns inclusive
    expected[30:37, 30:37] = expected[33:40, 33:40] = 1
    expected[10:17, 10:17] = expected[13:20, 13:20] = 1
    np.testing.assert_array_equal(mask, expected)
    # an outline past the tile's border is clipped to it
    corner = monuseg.rasterise([np.array([(-5.0, -5.0), (3.0, -5.0), (3.0, 3.0), (-5.0, 3.0)])], 8, 8)
    assert corner[:4, :4].all() and corner.sum() == 16


def test_monuseg_missing_archives(tmp_path):
    with pytest.raises(FileNotFoundError, match='MoNuSeg 2018 Training Data.zip') as err:
        monuseg.main([str(tmp_path), '-o', str(tmp_path / 'out')])
    assert 'monuseg.grand-challenge.org' in str(err.value) and str(tmp_path) in str(err.value)
    monuseg_release(str(tmp_path / 'only_train'), num_test=0)
    with pytest.raises(FileNotFoundError, match='MoNuSegTestData.zip'):
        monuseg.main([str(tmp_path / 'only_train'), '-o', str(tmp_path / 'out'), '--num-val', '1'])


def test_phenobench_merges_partial_plants(tmp_path):
    semantics = phenobench_release(str(tmp_path / 'PhenoBench'))
    out = tmp_path / 'phenobench'
    phenobench.main([str(tmp_path / 'PhenoBench'), '-o', str(out)])
    for (split, name), sem in semantics.items():
        label = cv2.imread(str(out / 'ann_dir' / split / name), cv2.IMREAD_UNCHANGED)
        assert set(np.unique(sem)) == {0, 1, 2, 3, 4}
        expected = sem.copy()
        expected[sem == 3], expected[sem == 4] = 1, 2  # partial crop -> crop, partial weed -> weed
        np.testing.assert_array_equal(label, expected)
        assert osp.isfile(out / 'img_dir' / split / name)
    assert len(files(out / 'img_dir' / 'test')) == 1 and not osp.exists(out / 'ann_dir' / 'test')
    with pytest.raises(FileNotFoundError, match='PhenoBench-v110.zip'):
        phenobench.main([str(tmp_path / 'missing'), '-o', str(tmp_path / 'x')])
