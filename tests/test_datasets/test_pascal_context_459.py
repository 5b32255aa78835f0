"""PASCAL-Context-459: the converter on a fixture laid out like the official archives, and the dataset."""
import importlib.util
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
from PIL import Image

from mmseg_digseg.datasets import PascalContext459Dataset
from mmseg_digseg.datasets.wide_label_dataset import IGNORE_INDEX
from ..conftest import REPO_ROOT

CLASSES = PascalContext459Dataset.METAINFO['classes']

CONVERTER = osp.join(REPO_ROOT, 'tools/dataset_converters/pascal_context_459.py')
_spec = importlib.util.spec_from_file_location('pascal_context_459_converter', CONVERTER)
converter = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(converter)

H, W = 6, 8
VAL_IDS = ['2008_000002', '2008_000003']
TRAIN_ID = '2008_000007'  # annotated, but not in the val list
NO_MAT_ID = '2010_000001'  # in the val list, but without a .mat (skipped, as CAT-Seg does)
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadWideAnnotations'), dict(type='PackSegInputs')]


def label_map(seed):
    """A LabelMap as in trainval/*.mat: uint16, 0 = unlabeled, 1..459; every value below occurs."""
    values = np.resize(np.array([0, 1, 2, 255, 256, 257, 300, 458, 459], dtype=np.uint16), H * W)
    return np.random.default_rng(seed).permutation(values).reshape(H, W)


@pytest.fixture
def official(tmp_path):
    """VOCtrainval_03-May-2010.tar and PASCAL-Context's trainval.tar.gz, extracted into tmp_path."""
    voc = tmp_path / 'VOCdevkit' / 'VOC2010'
    (voc / 'JPEGImages').mkdir(parents=True)
    (voc / 'trainval').mkdir()
    (voc / 'ImageSets' / 'Main').mkdir(parents=True)
    maps = {}
    for seed, image_id in enumerate(VAL_IDS + [TRAIN_ID, NO_MAT_ID]):
        Image.fromarray(np.full((H, W, 3), 40 * seed, np.uint8)).save(voc / 'JPEGImages' / f'{image_id}.jpg')
        if image_id != NO_MAT_ID:
            maps[image_id] = label_map(seed)
            scipy.io.savemat(voc / 'trainval' / f'{image_id}.mat', {'LabelMap': maps[image_id]})
    (voc / 'ImageSets' / 'Main' / 'val.txt').write_text('\n'.join(VAL_IDS + [NO_MAT_ID]) + '\n')
    (voc / 'ImageSets' / 'Main' / 'train.txt').write_text(TRAIN_ID + '\n')
    return tmp_path, maps


def expected_train_ids(lm):
    return np.where(lm == 0, 65535, lm.astype(np.int64) - 1)


def test_converter_writes_uint16_train_ids(official, capsys):
    root, maps = official
    converter.main([str(root), '--nproc', '1'])
    out = root / 'VOCdevkit/VOC2010/annotations_detectron2/pc459_val'
    assert sorted(p.name for p in out.iterdir()) == [f'{i}.tif' for i in VAL_IDS]
    for image_id in VAL_IDS:
        label = np.array(Image.open(out / f'{image_id}.tif'))
        assert label.dtype == np.uint16
        np.testing.assert_array_equal(label, expected_train_ids(maps[image_id]))
        assert set(np.unique(label).tolist()) == {0, 1, 254, 255, 256, 299, 457, 458, 65535}
    log = capsys.readouterr().out
    assert 'ImageSets/Main/val.txt' in log and 'Skipped 1' in log and NO_MAT_ID in log


def test_converter_values_exact():
    lm = np.array([[0, 1, 256], [257, 458, 459]], dtype=np.uint16)
    np.testing.assert_array_equal(converter.to_train_ids(lm), [[65535, 0, 255], [256, 457, 458]])
    assert converter.to_train_ids(lm).dtype == np.uint16
    with pytest.raises(ValueError, match='0..459'):
        converter.to_train_ids(np.array([[460]]))


def test_converter_cli_train_split_and_options(official, tmp_path):
    root, maps = official
    ids = tmp_path / 'ids.txt'
    ids.write_text(TRAIN_ID + '\n')
    out = tmp_path / 'out'
    subprocess.run([sys.executable, CONVERTER, str(root), '--split', 'train', '--split-file', str(ids), '-o', str(out),
                    '--nproc', '2'], check=True, capture_output=True)
    np.testing.assert_array_equal(np.array(Image.open(out / f'{TRAIN_ID}.tif')), expected_train_ids(maps[TRAIN_ID]))


def test_converter_split_file_preference(official):
    root, _ = official
    voc = root / 'VOCdevkit' / 'VOC2010'
    assert converter.find_split_file(str(voc), 'val').endswith('ImageSets/Main/val.txt')
    (voc / 'pascalcontext_val.txt').write_text(VAL_IDS[0] + '\n')  # CAT-Seg's list wins
    assert converter.find_split_file(str(voc), 'val') == str(voc / 'pascalcontext_val.txt')
    (voc / 'ImageSets' / 'Main' / 'train.txt').unlink()
    with pytest.raises(FileNotFoundError, match='VOCtrainval_03-May-2010.tar'):
        converter.find_split_file(str(voc), 'train')


def test_converter_names_missing_archives(tmp_path):
    with pytest.raises(FileNotFoundError, match='VOCtrainval_03-May-2010.tar'):
        converter.main([str(tmp_path)])
    (tmp_path / 'VOCdevkit' / 'VOC2010' / 'JPEGImages').mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match='trainval.tar.gz'):
        converter.main([str(tmp_path)])


def test_dataset_loads_wide_labels(official):
    from mmseg.registry import DATASETS
    root, maps = official
    converter.main([str(root), '--nproc', '1'])
    ds = DATASETS.build(dict(type='PascalContext459Dataset', data_root=str(root), pipeline=PIPELINE))
    assert isinstance(ds, PascalContext459Dataset)
    # one sample per label file: the other images of JPEGImages are not samples
    assert [osp.basename(ds.get_data_info(i)['img_path']) for i in range(len(ds))] == [f'{i}.jpg' for i in VAL_IDS]
    assert len(ds.metainfo['classes']) == 459 == len(set(CLASSES)) == len(ds.metainfo['palette'])
    assert ds.metainfo['classes'][0] == 'accordion' and ds.metainfo['classes'][458] == 'wool'
    assert ds.ignore_index == IGNORE_INDEX == 65535
    for i, image_id in enumerate(VAL_IDS):
        sample = ds[i]
        gt = sample['data_samples'].gt_sem_seg.data[0].numpy()
        np.testing.assert_array_equal(gt, expected_train_ids(maps[image_id]))  # ids > 255 and 65535 survive
        assert tuple(sample['inputs'].shape) == (3, H, W)


def test_dataset_ann_file_and_class_names(official):
    from mmseg.registry import DATASETS
    root, _ = official
    converter.main([str(root), '--nproc', '1'])
    (root / 'one.txt').write_text(VAL_IDS[1] + '\n')
    ds = DATASETS.build(dict(type='PascalContext459Dataset', data_root=str(root), ann_file='one.txt',
                             pipeline=PIPELINE))
    assert len(ds) == 1 and ds.get_data_info(0)['seg_map_path'].endswith(f'{VAL_IDS[1]}.tif')
    renamed = [f'class {i}' for i in range(459)]  # all classes renamed: fine, labels unchanged
    ds = DATASETS.build(dict(type='PascalContext459Dataset', data_root=str(root), metainfo=dict(classes=renamed),
                             pipeline=PIPELINE))
    assert list(ds.metainfo['classes']) == renamed and ds.label_map is None
    with pytest.raises(ValueError, match='subsets'):
        DATASETS.build(dict(type='PascalContext459Dataset', data_root=str(root),
                            metainfo=dict(classes=CLASSES[:10]), pipeline=PIPELINE))
