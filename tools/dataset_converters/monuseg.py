"""Convert the official MoNuSeg 2018 archives to MMSeg's folder layout (MoNuSegDataset): binary nucleus masks
rasterised from the XML polygon annotations.

    python tools/dataset_converters/monuseg.py SRC [-o data/monuseg] [--num-val 6] [--seed 0]

Input: SRC holds the two official archives of https://monuseg.grand-challenge.org/Data/, extracted:

* ``MoNuSeg 2018 Training Data.zip`` -> ``SRC/MoNuSeg 2018 Training Data/Tissue Images/<id>.tif`` and
  ``SRC/MoNuSeg 2018 Training Data/Annotations/<id>.xml`` (30 tiles);
* ``MoNuSegTestData.zip`` -> ``SRC/MoNuSegTestData/<id>.tif`` and ``<id>.xml`` (14 tiles).

Each XML (Aperio ImageScope format) has one ``Region`` per nucleus whose ``Vertices/Vertex`` carry X
(column) and Y (row) in pixels. Every region with at least 3 vertices is a nucleus: its outline (vertices
rounded to the nearest pixel) and every pixel it encloses become foreground, each outline filled on its
own, so overlapping nuclei merge into one foreground and an outline that crosses itself is filled whole.

Output (``-o``, default ``data/monuseg``): ``img_dir/{train,val,test}/<id>.png`` (the tile, re-encoded
losslessly) and ``ann_dir/{train,val,test}/<id>.png`` (uint8, 0 = background, 1 = nucleus). ``--num-val``
training tiles (seeded) become the validation split that chooses the binarisation threshold; the paper
does not state its validation split.
"""
import argparse
import os
import os.path as osp
import xml.etree.ElementTree as ET

import cv2
import numpy as np

URL = 'https://monuseg.grand-challenge.org/Data/'
TRAIN_ARCHIVE, TRAIN_DIR = 'MoNuSeg 2018 Training Data.zip', 'MoNuSeg 2018 Training Data'
TEST_ARCHIVE, TEST_DIR = 'MoNuSegTestData.zip', 'MoNuSegTestData'


def polygons_from_xml(xml_path: str) -> list:
    """The nucleus outlines of one annotation file: a list of (N, 2) float arrays of (x, y)."""
    polygons = []
    for region in ET.parse(xml_path).getroot().iter('Region'):
        points = [(float(v.get('X')), float(v.get('Y'))) for v in region.iter('Vertex')]
        if len(points) >= 3:
            polygons.append(np.asarray(points, np.float64))
    return polygons


def rasterise(polygons: list, height: int, width: int) -> np.ndarray:
    """Fill the polygons into a uint8 mask: 1 on or inside a nucleus outline, 0 elsewhere.

    One ``cv2.fillPoly`` call with every polygon fills by the even-odd rule, leaving the overlap of two
    nuclei empty; so each outline is filled on its own (``fill_outline``) and the fills are merged.
    """
    mask = np.zeros((height, width), np.uint8)
    for polygon in polygons:
        fill_outline(mask, np.round(polygon).astype(np.int32))
    return mask


def fill_outline(mask: np.ndarray, points: np.ndarray) -> None:
    """Set to 1 the pixels of ``mask`` on or enclosed by the closed outline ``points`` ((N, 2) int x, y).

    ``cv2.fillPoly`` fills one outline by the even-odd rule too: where an outline crosses itself and wraps
    a region twice, that region stays empty. Filled here instead: every pixel the outside cannot reach
    (a 4-connected flood from a one-pixel frame around the outline, which cannot slip through the
    outline's 8-connected diagonal steps).
    """
    x0, y0 = points.min(0) - 1
    x1, y1 = points.max(0) + 1
    canvas = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
    cv2.fillPoly(canvas, [points - (x0, y0)], 1)
    cv2.floodFill(canvas, None, (0, 0), 2)  # 4-connected from the frame's corner: the whole outside
    inside = canvas != 2
    # the part of the outline's box inside the image (outlines may cross the tile's border)
    top, left = max(y0, 0), max(x0, 0)
    bottom, right = min(y1 + 1, mask.shape[0]), min(x1 + 1, mask.shape[1])
    if top < bottom and left < right:
        mask[top:bottom, left:right] |= inside[top - y0:bottom - y0, left - x0:right - x0]


def find_pairs(image_dir: str, xml_dir: str, archive: str, src: str) -> list:
    stems = sorted(n[:-4] for n in os.listdir(image_dir) if n.lower().endswith('.tif')) if osp.isdir(image_dir) \
        else []
    if not stems:
        raise FileNotFoundError(
            f'No MoNuSeg tiles at {image_dir}/<id>.tif. Download {archive} from {URL} and extract it into {src}.')
    missing = [s for s in stems if not osp.isfile(osp.join(xml_dir, f'{s}.xml'))]
    if missing:
        raise FileNotFoundError(f'{len(missing)} tiles have no annotation in {xml_dir}, e.g. {missing[:3]}: '
                                f'extract {archive} ({URL}) again.')
    return [(osp.join(image_dir, f'{s}.tif'), osp.join(xml_dir, f'{s}.xml'), s) for s in stems]


def convert_one(image_path: str, xml_path: str, stem: str, out_dir: str, split: str) -> int:
    image = cv2.imread(image_path, cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f'Cannot read {image_path}')
    polygons = polygons_from_xml(xml_path)
    cv2.imwrite(osp.join(out_dir, 'img_dir', split, f'{stem}.png'), image)
    cv2.imwrite(osp.join(out_dir, 'ann_dir', split, f'{stem}.png'), rasterise(polygons, *image.shape[:2]))
    return len(polygons)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Convert MoNuSeg 2018 (XML polygons) to MMSeg folders.')
    p.add_argument('src', help=f'folder holding the extracted "{TRAIN_DIR}" and "{TEST_DIR}" folders')
    p.add_argument('-o', '--out-dir', default='data/monuseg')
    p.add_argument('--num-val', type=int, default=6, help='training tiles held out for validation')
    p.add_argument('--seed', type=int, default=0)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    train = find_pairs(osp.join(args.src, TRAIN_DIR, 'Tissue Images'), osp.join(args.src, TRAIN_DIR, 'Annotations'),
                       TRAIN_ARCHIVE, args.src)
    test = find_pairs(osp.join(args.src, TEST_DIR), osp.join(args.src, TEST_DIR), TEST_ARCHIVE, args.src)
    if not 0 <= args.num_val < len(train):
        raise ValueError(f'--num-val must be in [0, {len(train)}), got {args.num_val}')
    val_idx = set(np.random.default_rng(args.seed).permutation(len(train))[:args.num_val].tolist())
    splits = {'train': [p for i, p in enumerate(train) if i not in val_idx],
              'val': [p for i, p in enumerate(train) if i in val_idx], 'test': test}
    for split, pairs in splits.items():
        for sub in ('img_dir', 'ann_dir'):
            os.makedirs(osp.join(args.out_dir, sub, split), exist_ok=True)
        nuclei = sum(convert_one(*pair, out_dir=args.out_dir, split=split) for pair in pairs)
        print(f'MoNuSeg {split}: {len(pairs)} tiles, {nuclei} nuclei')
    print(f'Written to {args.out_dir}')


if __name__ == '__main__':
    try:
        main()
    except FileNotFoundError as e:  # a missing download: the message says which one and where from
        raise SystemExit(f'error: {e}')
