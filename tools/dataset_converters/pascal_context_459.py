"""Convert the official PASCAL-Context full annotations (459 classes) to 16-bit train-id labels.

    python tools/dataset_converters/pascal_context_459.py DATA_ROOT [--split val] \
        [--trainval-dir DIR] [--split-file FILE] [-o OUT_DIR] [--nproc N]

Inputs (DATA_ROOT is the folder that holds ``VOCdevkit/``, the dataset's ``data_root``):

* ``VOCtrainval_03-May-2010.tar`` extracted into DATA_ROOT (``VOCdevkit/VOC2010/JPEGImages``, ...);
* ``trainval.tar.gz`` of PASCAL-Context extracted into ``VOCdevkit/VOC2010`` (``trainval/<id>.mat``,
  each holding ``LabelMap``: 0 = unlabeled, 1..459 = the classes of its ``labels.txt``);
* the image ids of the split. By default the first found of ``VOC2010/pascalcontext_val.txt``
  (the 5104 ids CAT-Seg ships as ``datasets/pascalcontext_val.txt`` and its script reads),
  ``VOC2010/ImageSets/SegmentationContext/val.txt`` (written by MMSeg's ``pascal_context.py`` from
  the val phase of Detail's ``trainval_merged.json``, the split SAN and ODISE use) and
  ``VOC2010/ImageSets/Main/val.txt`` (in the VOC2010 tar: PASCAL-Context's split is VOC2010's).

Output: ``VOCdevkit/VOC2010/annotations_detectron2/pc459_<split>/<id>.tif``, uint16, pixel =
``LabelMap - 1`` (train ids 0..458) and 65535 where unlabeled: the files CAT-Seg's
``prepare_pascal_context_459.py`` writes, read by ``PascalContext459Dataset``.
"""
import argparse
import os
import os.path as osp
from functools import partial
from multiprocessing import Pool

import numpy as np
import scipy.io
from PIL import Image
from tqdm import tqdm

VOC_URL = 'http://host.robots.ox.ac.uk/pascal/VOC/voc2010/VOCtrainval_03-May-2010.tar'
CONTEXT_URL = 'https://cs.stanford.edu/~roozbeh/pascal-context/trainval.tar.gz'
NUM_CLASSES = 459
IGNORE_INDEX = 65535

# Where the split's image ids are looked for, in order (relative to VOCdevkit/VOC2010).
SPLIT_FILES = {
    'val': ['pascalcontext_val.txt', 'ImageSets/SegmentationContext/val.txt', 'ImageSets/Main/val.txt'],
    'train': ['ImageSets/SegmentationContext/train.txt', 'ImageSets/Main/train.txt'],
}


def to_train_ids(label_map: np.ndarray) -> np.ndarray:
    """LabelMap (0 = unlabeled, 1..459) -> uint16 train ids (0..458, 65535 = unlabeled)."""
    label_map = np.asarray(label_map, dtype=np.int64)
    if label_map.min() < 0 or label_map.max() > NUM_CLASSES:
        raise ValueError(f'LabelMap values must be in 0..{NUM_CLASSES}, got {label_map.min()}..{label_map.max()}')
    return np.where(label_map == 0, IGNORE_INDEX, label_map - 1).astype(np.uint16)


def convert_one(image_id: str, mat_dir: str, out_dir: str) -> bool:
    """Write ``<out_dir>/<image_id>.tif``; False when the image has no annotation file."""
    mat_path = osp.join(mat_dir, f'{image_id}.mat')
    if not osp.isfile(mat_path):
        return False
    label = to_train_ids(scipy.io.loadmat(mat_path)['LabelMap'])
    Image.fromarray(label).save(osp.join(out_dir, f'{image_id}.tif'))
    return True


def read_ids(path: str) -> list:
    with open(path) as f:
        return [line.split()[0] for line in f if line.strip()]


def find_split_file(voc_dir: str, split: str) -> str:
    for rel in SPLIT_FILES[split]:
        if osp.isfile(osp.join(voc_dir, rel)):
            return osp.join(voc_dir, rel)
    raise FileNotFoundError(
        f'No {split} id list in {voc_dir} (looked for {SPLIT_FILES[split]}). ImageSets/Main/{split}.txt comes '
        f'with VOCtrainval_03-May-2010.tar ({VOC_URL}); or pass --split-file.')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Convert PASCAL-Context full (459 classes) to uint16 .tif labels.')
    p.add_argument('data_root', help='folder holding VOCdevkit/ (the extracted VOCtrainval_03-May-2010.tar)')
    p.add_argument('--split', default='val', choices=sorted(SPLIT_FILES))
    p.add_argument('--trainval-dir', help='folder of the PASCAL-Context <id>.mat files '
                   '(default: VOCdevkit/VOC2010/trainval)')
    p.add_argument('--split-file', help='text file of image ids, one per line (default: see the module docstring)')
    p.add_argument('-o', '--out-dir', help='default: VOCdevkit/VOC2010/annotations_detectron2/pc459_<split>')
    p.add_argument('--nproc', type=int, default=min(8, os.cpu_count() or 1), help='worker processes')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    voc_dir = osp.join(args.data_root, 'VOCdevkit', 'VOC2010')
    if not osp.isdir(osp.join(voc_dir, 'JPEGImages')):
        raise FileNotFoundError(f'No VOC2010 images at {voc_dir}/JPEGImages: extract VOCtrainval_03-May-2010.tar '
                                f'({VOC_URL}) into {args.data_root}.')
    mat_dir = args.trainval_dir or osp.join(voc_dir, 'trainval')
    if not osp.isdir(mat_dir):
        raise FileNotFoundError(f'No PASCAL-Context annotations at {mat_dir}: extract trainval.tar.gz ({CONTEXT_URL}) '
                                f'into {voc_dir} (gives trainval/<id>.mat), or pass --trainval-dir.')
    split_file = args.split_file or find_split_file(voc_dir, args.split)
    ids = read_ids(split_file)
    out_dir = args.out_dir or osp.join(voc_dir, 'annotations_detectron2', f'pc459_{args.split}')
    os.makedirs(out_dir, exist_ok=True)
    print(f'{len(ids)} {args.split} ids from {split_file}')

    work = partial(convert_one, mat_dir=mat_dir, out_dir=out_dir)
    if args.nproc > 1:
        with Pool(args.nproc) as pool:
            done = list(tqdm(pool.imap(work, ids, chunksize=16), total=len(ids), desc='PASCAL-Context-459'))
    else:
        done = [work(i) for i in tqdm(ids, desc='PASCAL-Context-459')]

    missing = [i for i, ok in zip(ids, done) if not ok]
    if len(missing) == len(ids):
        raise FileNotFoundError(f'None of the {len(ids)} ids of {split_file} has a .mat file in {mat_dir}.')
    if missing:  # CAT-Seg's script skips these silently
        print(f'Skipped {len(missing)} ids without a .mat file, e.g. {missing[:3]}')
    print(f'Wrote {len(ids) - len(missing)} labels to {out_dir}')


if __name__ == '__main__':
    try:
        main()
    except FileNotFoundError as e:  # a missing download: the message says which one and where from
        raise SystemExit(f'error: {e}')
