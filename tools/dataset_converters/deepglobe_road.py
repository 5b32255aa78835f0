"""Convert the official DeepGlobe Road Extraction release to MMSeg's folder layout (DeepGlobeRoadDataset).

    python tools/dataset_converters/deepglobe_road.py SRC [-o data/deepglobe_road] \
        [--val-ratio 0.1] [--test-ratio 0.2] [--seed 0] [--nproc N]

Input: SRC is the folder where the release was extracted, the DeepGlobe Road Extraction Challenge data
(CVPR 2018, http://deepglobe.org; mirrored on Kaggle as ``balraj98/deepglobe-road-extraction-dataset``,
``archive.zip``): ``SRC/train/<id>_sat.jpg`` (1024x1024 RGB) and ``SRC/train/<id>_mask.png`` (road
white, background black; JPEG-like values near 0 and 255 are binarised at 128). The release's ``valid``
and ``test`` folders have no masks and are not used.

Output (``-o``, default ``data/deepglobe_road``): ``img_dir/{train,val,test}/<id>.jpg`` (copied) and
``ann_dir/{train,val,test}/<id>.png`` (uint8, 0 = background, 1 = road). The 6226 annotated tiles are
split at random with ``--seed`` (sorted ids, then a seeded permutation): ``--test-ratio`` for test,
``--val-ratio`` for val (threshold search and checkpoint selection), the rest for training. The paper
does not state its split; ``--split-dir DIR`` with ``train.txt``, ``val.txt``, ``test.txt`` (one id a line)
uses a given one instead.
"""
import argparse
import os
import os.path as osp
import shutil
from functools import partial
from multiprocessing import Pool

import cv2
import numpy as np

ARCHIVE = ('the DeepGlobe Road Extraction Challenge release (http://deepglobe.org; Kaggle mirror: '
           'https://www.kaggle.com/datasets/balraj98/deepglobe-road-extraction-dataset, archive.zip)')
SPLITS = ('train', 'val', 'test')


def find_ids(src: str) -> list:
    train_dir = osp.join(src, 'train')
    ids = sorted(name[:-len('_sat.jpg')] for name in os.listdir(train_dir)) if osp.isdir(train_dir) else []
    ids = [i for i in ids if osp.isfile(osp.join(train_dir, f'{i}_sat.jpg'))] if ids else []
    if not ids:
        raise FileNotFoundError(
            f'No DeepGlobe road tiles at {train_dir}/<id>_sat.jpg. Download {ARCHIVE} and extract it into {src}, '
            f'so that {train_dir} holds <id>_sat.jpg and <id>_mask.png.')
    missing = [i for i in ids if not osp.isfile(osp.join(train_dir, f'{i}_mask.png'))]
    if missing:
        raise FileNotFoundError(f'{len(missing)} tiles of {train_dir} have no <id>_mask.png, e.g. {missing[:3]}; '
                                f'the archive is incomplete: extract {ARCHIVE} again.')
    return ids


def split_ids(ids: list, val_ratio: float, test_ratio: float, seed: int) -> dict:
    """Seeded random split of the sorted ids: test first, then val, the rest train (each list sorted)."""
    order = np.random.default_rng(seed).permutation(len(ids))
    num_test, num_val = int(round(test_ratio * len(ids))), int(round(val_ratio * len(ids)))
    picked = {'test': order[:num_test], 'val': order[num_test:num_test + num_val],
              'train': order[num_test + num_val:]}
    return {split: sorted(ids[i] for i in idx) for split, idx in picked.items()}


def read_split_dir(split_dir: str, ids: list) -> dict:
    known, splits = set(ids), {}
    for split in SPLITS:
        with open(osp.join(split_dir, f'{split}.txt')) as f:
            splits[split] = [line.strip() for line in f if line.strip()]
        unknown = [i for i in splits[split] if i not in known]
        if unknown:
            raise ValueError(f'{split_dir}/{split}.txt names tiles not in the release: {unknown[:3]}')
    return splits


def to_labels(mask: np.ndarray) -> np.ndarray:
    """A DeepGlobe mask (gray or RGB, road ~255) -> uint8 labels, 1 = road."""
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    return (mask >= 128).astype(np.uint8)


def convert_one(item, src: str, out_dir: str) -> None:
    tile_id, split = item
    train_dir = osp.join(src, 'train')
    shutil.copyfile(osp.join(train_dir, f'{tile_id}_sat.jpg'), osp.join(out_dir, 'img_dir', split, f'{tile_id}.jpg'))
    mask = cv2.imread(osp.join(train_dir, f'{tile_id}_mask.png'), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise OSError(f'Cannot read {train_dir}/{tile_id}_mask.png')
    cv2.imwrite(osp.join(out_dir, 'ann_dir', split, f'{tile_id}.png'), to_labels(mask))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Convert DeepGlobe road extraction to MMSeg folders.')
    p.add_argument('src', help='folder of the extracted release (holds train/<id>_sat.jpg, <id>_mask.png)')
    p.add_argument('-o', '--out-dir', default='data/deepglobe_road')
    p.add_argument('--val-ratio', type=float, default=0.1)
    p.add_argument('--test-ratio', type=float, default=0.2)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--split-dir', help='folder with train.txt, val.txt, test.txt (tile ids) to use instead')
    p.add_argument('--nproc', type=int, default=min(8, os.cpu_count() or 1))
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    ids = find_ids(args.src)
    splits = (read_split_dir(args.split_dir, ids) if args.split_dir else
              split_ids(ids, args.val_ratio, args.test_ratio, args.seed))
    for split in SPLITS:
        for sub in ('img_dir', 'ann_dir'):
            os.makedirs(osp.join(args.out_dir, sub, split), exist_ok=True)
    items = [(i, split) for split in SPLITS for i in splits[split]]
    work = partial(convert_one, src=args.src, out_dir=args.out_dir)
    if args.nproc > 1:
        with Pool(args.nproc) as pool:
            pool.map(work, items, chunksize=16)
    else:
        for item in items:
            work(item)
    print(f'DeepGlobe road: {", ".join(f"{len(splits[s])} {s}" for s in SPLITS)} tiles written to {args.out_dir}')


if __name__ == '__main__':
    try:
        main()
    except FileNotFoundError as e:  # a missing download: the message says which one and where from
        raise SystemExit(f'error: {e}')
