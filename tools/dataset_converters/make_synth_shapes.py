"""Generate the SynthShapes dataset (deterministic, idempotent) in the MMSegmentation layout.

    python tools/dataset_converters/make_synth_shapes.py [--out data/synth_shapes] \
        [--num-train 400] [--num-val 60] [--size 64] [--seed 0] [--variant basic]

``--variant many`` makes the 49-class variant (6 shapes x 8 textures), e.g.::

    python tools/dataset_converters/make_synth_shapes.py --variant many --out data/synth_shapes_many

Either variant also writes ``captions.json`` (one caption per image) next to ``img_dir``.
"""
import argparse
import os.path as osp
import sys

# Runs from a plain checkout as well as with the package installed (pip install -e .).
sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmseg_digseg.datasets.synth_shapes import VARIANTS, generate_synth_shapes  # noqa: E402


def main():
    p = argparse.ArgumentParser(description='Generate the SynthShapes segmentation dataset.')
    p.add_argument('--out', default='data/synth_shapes', help='dataset root')
    p.add_argument('--num-train', type=int, default=400)
    p.add_argument('--num-val', type=int, default=60)
    p.add_argument('--size', type=int, default=64, help='image side in pixels')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--variant', default='basic', choices=tuple(VARIANTS),
                   help="'basic': 6 classes (5 shapes, each with its own texture); "
                   "'many': 49 classes (6 shapes x 8 textures)")
    args = p.parse_args()
    root = generate_synth_shapes(
        args.out, num_train=args.num_train, num_val=args.num_val, size=args.size, seed=args.seed,
        variant=args.variant)
    num_classes = len(VARIANTS[args.variant][0])
    print(f'SynthShapes ({args.variant}, {num_classes} classes): {args.num_train} train + {args.num_val} val '
          f'images in {root}')


if __name__ == '__main__':
    main()
