"""Segment one image with any classes, as MMSeg's demo/image_demo.py does, and write the overlay with a legend.

    python demo/image_demo.py IMG CONFIG CHECKPOINT --classes "disc,ring,background" --out-file result.png

Without --classes the checkpoint's own classes are used. For folders, score maps and large vocabularies
use tools/infer.py.
"""
from argparse import ArgumentParser

import mmcv
from PIL import Image

from mmseg_digseg.apis import init_digseg, render_result, segment
from mmseg_digseg.models.segmentors.digseg import INFERENCE_PRESETS


def parse_classes(text):
    if text is None:
        return None
    classes = [c.strip() for c in text.split('|' if '|' in text else ',')]
    if not all(classes):
        raise SystemExit(f'--classes "{text}" has an empty entry: give comma-separated names, e.g. "cat,sofa".')
    return classes


def main():
    parser = ArgumentParser(description='DiGSeg image demo')
    parser.add_argument('img', help='image file')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--classes', help='comma-separated class names (default: the checkpoint\'s classes); '
                        'use "|" between classes whose names hold commas (synonyms)')
    parser.add_argument('--out-file', default='demo_result.png', help='where the overlay with legend goes')
    parser.add_argument('--preset', choices=list(INFERENCE_PRESETS), help='ensemble x steps (default: the config\'s)')
    parser.add_argument('--device', default='cpu', help='device used for inference')
    parser.add_argument('--opacity', type=float, default=0.5, help='opacity of the painted labels, in (0, 1]')
    args = parser.parse_args()

    classes = parse_classes(args.classes)
    image = mmcv.imread(args.img, flag='unchanged')
    if image is None:
        raise SystemExit(f'Cannot read {args.img} as an image.')
    model = init_digseg(args.config, args.checkpoint, device=args.device)
    if args.preset:
        model.test_cfg.update(INFERENCE_PRESETS[args.preset])
    result = segment(model, image, classes)
    overlay, _, present = render_result(model, image, result, classes or model.class_names, args.opacity)
    Image.fromarray(overlay).save(args.out_file)
    print(f'Wrote {args.out_file}; labels present: {present}')


if __name__ == '__main__':
    main()
