"""Convert the official ADE20K_2021_17_01 release to ADE20K-Full (847 classes) for ADE20KFull847Dataset.

    python tools/dataset_converters/ade20k_full.py SRC_DIR [-o OUT_DIR] [--nproc N]

SRC_DIR is where ADE20K_2021_17_01.zip (https://ade20k.csail.mit.edu, free registration) was
extracted, i.e. it holds ADE20K_2021_17_01/index_ade20k.pkl and ADE20K_2021_17_01/images/ADE/...
Writes OUT_DIR (default: SRC_DIR), the dataset's ``data_root``::

    OUT_DIR/ADE20K_2021_17_01/images_detectron2/{training,validation}/ADE_*.jpg
    OUT_DIR/ADE20K_2021_17_01/annotations_detectron2/{training,validation}/ADE_*.tif

This reproduces Mask2Former's datasets/prepare_ade20k_full_sem_seg.py, so both outputs are
interchangeable and results comparable with the published A-847 numbers:
- the class index of a pixel is decoded from ``<name>_seg.png`` as in the ADE20K toolkit
  (``R // 10 * 256 + G``; 1-based, i.e. ``objectnames[index - 1]``, 0 = unlabeled);
- indices listed in ade20k_847_ids.json become their position there (the train id 0..846),
  all others 65535; labels are saved as uint16 TIFF;
- images whose short side exceeds 512 px are resized to a short side of 512 (long side
  ``round(long * 512 / short)``), bilinear for the image and nearest for the labels;
- images are re-encoded as JPEG with PIL's defaults (as that script does), even when not resized;
- the split comes from the file name (ADE_train_* / ADE_val_*).
"""
import argparse
import functools
import json
import os
import os.path as osp
import pickle
from multiprocessing import Pool

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

RELEASE = 'ADE20K_2021_17_01'
IDS_FILE = osp.join(osp.dirname(osp.abspath(__file__)), 'ade20k_847_ids.json')
IGNORE_INDEX = 65535
SHORT_SIDE = 512


@functools.lru_cache(maxsize=None)
def train_id_lut() -> np.ndarray:
    """ADE class index (< 2**16) -> train id, 65535 where the class is not one of the 847."""
    with open(IDS_FILE) as f:
        ids = json.load(f)
    lut = np.full(2**16, IGNORE_INDEX, np.uint16)
    lut[ids] = np.arange(len(ids))
    return lut


def decode_ade_seg(seg_rgb: np.ndarray) -> np.ndarray:
    """``<name>_seg.png`` (H, W, 3) -> ADE class index per pixel (int32), as the ADE20K toolkit."""
    r = seg_rgb[..., 0].astype(np.int32)
    g = seg_rgb[..., 1].astype(np.int32)
    return r // 10 * 256 + g


def convert_one(job):
    """Convert one image and its labels; ``job`` is (src_jpg, out_root, split, file_name)."""
    src_jpg, out_root, split, file_name = job
    with Image.open(src_jpg) as im:
        img = np.asarray(im)
    with Image.open(src_jpg[:-len('.jpg')] + '_seg.png') as seg:
        label = decode_ade_seg(np.asarray(seg.convert('RGB')))
    h, w = img.shape[:2]
    if min(h, w) > SHORT_SIDE:
        # the same float expressions as Mask2Former's script, so round() gives the same sizes
        if h <= w:
            h, w = SHORT_SIDE, round(w / float(h) * SHORT_SIDE)
        else:
            h, w = round(h / float(w) * SHORT_SIDE), SHORT_SIDE
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
        label = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST)
    Image.fromarray(img).save(osp.join(out_root, 'images_detectron2', split, file_name))
    Image.fromarray(train_id_lut()[label]).save(
        osp.join(out_root, 'annotations_detectron2', split, file_name[:-len('.jpg')] + '.tif'))


def main(argv=None):
    p = argparse.ArgumentParser(description='Convert ADE20K_2021_17_01 to ADE20K-Full (847 classes).')
    p.add_argument('src_dir', help=f'folder where {RELEASE}.zip was extracted (holds {RELEASE}/)')
    p.add_argument('-o', '--out-dir', help='dataset root to write (default: SRC_DIR)')
    p.add_argument('--nproc', type=int, default=1, help='worker processes')
    args = p.parse_args(argv)

    src_dir = osp.abspath(args.src_dir)
    if osp.basename(src_dir) == RELEASE and not osp.isdir(osp.join(src_dir, RELEASE)):
        src_dir = osp.dirname(src_dir)  # pointed at the release folder itself
    index_file = osp.join(src_dir, RELEASE, 'index_ade20k.pkl')
    if not osp.isfile(index_file):
        raise SystemExit(
            f'{index_file} not found. Download {RELEASE}.zip from https://ade20k.csail.mit.edu '
            f'(free registration) and extract it into {src_dir}, so that '
            f'{osp.join(src_dir, RELEASE, "index_ade20k.pkl")} and {RELEASE}/images/ADE/ exist.')
    with open(index_file, 'rb') as f:
        index = pickle.load(f)

    out_root = osp.join(osp.abspath(args.out_dir or src_dir), RELEASE)
    for sub in ('images_detectron2', 'annotations_detectron2'):
        for split in ('training', 'validation'):
            os.makedirs(osp.join(out_root, sub, split), exist_ok=True)
    jobs = [(osp.join(src_dir, folder, name), out_root,
             'validation' if name.split('_')[1] == 'val' else 'training', name)
            for folder, name in zip(index['folder'], index['filename'])]

    if args.nproc > 1:
        with Pool(args.nproc) as pool:
            for _ in tqdm(pool.imap_unordered(convert_one, jobs, chunksize=16), total=len(jobs)):
                pass
    else:
        for job in tqdm(jobs):
            convert_one(job)
    print(f'ADE20K-Full: {len(jobs)} images converted; data_root = {osp.dirname(out_root)}')


if __name__ == '__main__':
    main()
