"""Convert the official PhenoBench release to MMSeg's folder layout (PhenoBenchDataset): soil, crop, weed.

    python tools/dataset_converters/phenobench.py SRC [-o data/phenobench]

Input: SRC is the extracted ``PhenoBench`` folder of the official archive (``PhenoBench-v110.zip``,
https://www.phenobench.org/dataset.html): ``SRC/{train,val}/images/<name>.png`` (1024x1024 RGB) with
``SRC/{train,val}/semantics/<name>.png`` (0 = soil, 1 = crop, 2 = weed, 3 = partial crop, 4 = partial
weed), and ``SRC/test/images/<name>.png`` (labels hidden). Other annotation folders (plant and leaf
instances, visibility) are not used.

Output (``-o``, default ``data/phenobench``): ``img_dir/{train,val,test}/<name>.png`` (copied) and
``ann_dir/{train,val}/<name>.png``, uint8 with partial crops counted as crop and partial weeds as weed, as
the benchmark's semantic segmentation task evaluates them: 0 = soil, 1 = crop, 2 = weed.
"""
import argparse
import os
import os.path as osp
import shutil

import cv2
import numpy as np

ARCHIVE = 'PhenoBench-v110.zip (https://www.phenobench.org/dataset.html)'
# official semantics -> soil / crop / weed
LABEL_MAP = np.array([0, 1, 2, 1, 2], np.uint8)


def to_labels(semantics: np.ndarray, path: str = '') -> np.ndarray:
    if semantics.ndim == 3:
        semantics = semantics[..., 0]
    if semantics.min() < 0 or semantics.max() >= len(LABEL_MAP):
        raise ValueError(f'PhenoBench semantics must be in 0..{len(LABEL_MAP) - 1}, got '
                         f'{semantics.min()}..{semantics.max()} in {path}')
    return LABEL_MAP[semantics.astype(np.int64)]


def convert_split(src: str, out_dir: str, split: str, with_labels: bool) -> int:
    image_dir, sem_dir = osp.join(src, split, 'images'), osp.join(src, split, 'semantics')
    names = sorted(n for n in os.listdir(image_dir) if n.endswith('.png')) if osp.isdir(image_dir) else []
    if not names:
        raise FileNotFoundError(f'No PhenoBench {split} images at {image_dir}/*.png. Download {ARCHIVE} and '
                                f'extract it so that {src} is its PhenoBench folder ({split}/images, {split}/semantics).')
    os.makedirs(osp.join(out_dir, 'img_dir', split), exist_ok=True)
    if with_labels:
        os.makedirs(osp.join(out_dir, 'ann_dir', split), exist_ok=True)
    for name in names:
        shutil.copyfile(osp.join(image_dir, name), osp.join(out_dir, 'img_dir', split, name))
        if with_labels:
            sem_path = osp.join(sem_dir, name)
            semantics = cv2.imread(sem_path, cv2.IMREAD_UNCHANGED)
            if semantics is None:
                raise FileNotFoundError(f'No semantics for {name} at {sem_path}: extract {ARCHIVE} again.')
            cv2.imwrite(osp.join(out_dir, 'ann_dir', split, name), to_labels(semantics, sem_path))
    return len(names)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Convert PhenoBench semantics to MMSeg folders (soil, crop, weed).')
    p.add_argument('src', help='the extracted PhenoBench folder (holds train/, val/, test/)')
    p.add_argument('-o', '--out-dir', default='data/phenobench')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    for split in ('train', 'val'):
        print(f'PhenoBench {split}: {convert_split(args.src, args.out_dir, split, True)} images with labels')
    test_dir = osp.join(args.src, 'test', 'images')
    if osp.isdir(test_dir) and any(n.endswith('.png') for n in os.listdir(test_dir)):
        print(f'PhenoBench test: {convert_split(args.src, args.out_dir, "test", False)} images (labels hidden)')
    print(f'Written to {args.out_dir}')


if __name__ == '__main__':
    try:
        main()
    except FileNotFoundError as e:  # a missing download: the message says which one and where from
        raise SystemExit(f'error: {e}')
