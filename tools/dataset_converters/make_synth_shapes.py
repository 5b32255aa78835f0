"""Generate the SynthShapes dataset (deterministic, idempotent) in the MMSegmentation layout.

    python tools/dataset_converters/make_synth_shapes.py [--out data/synth_shapes] \
        [--num-train 400] [--num-val 60] [--size 64] [--seed 0]
"""
import argparse
import os.path as osp
import sys

# Runs from a plain checkout as well as with the package installed (pip install -e .).
sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmseg_digseg.datasets.synth_shapes import generate_synth_shapes  # noqa: E402


def main():
    p = argparse.ArgumentParser(description='Generate the SynthShapes segmentation dataset.')
    p.add_argument('--out', default='data/synth_shapes', help='dataset root')
    p.add_argument('--num-train', type=int, default=400)
    p.add_argument('--num-val', type=int, default=60)
    p.add_argument('--size', type=int, default=64, help='image side in pixels')
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args()
    root = generate_synth_shapes(
        args.out, num_train=args.num_train, num_val=args.num_val, size=args.size, seed=args.seed)
    print(f'SynthShapes: {args.num_train} train + {args.num_val} val images in {root}')


if __name__ == '__main__':
    main()
