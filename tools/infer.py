"""Segment images with any prompts; write an overlay with a legend plus one score map per prompt, per image.

    python tools/infer.py IMAGE --config C --checkpoint K --prompts "disc,ring,background" [--out-dir D]
    python tools/infer.py FOLDER --config C --checkpoint K --prompts "disc,ring"        (its images)
    python tools/infer.py "photos/*/*.jpg" --config C --checkpoint K                   (a quoted glob)
    python tools/infer.py IMAGE --config C --checkpoint K --vocabulary ade20k_847 --topk 30 --preset 4x2

Labels follow the order of the prompts. For each image STEM, OUT_DIR gets STEM_overlay.png and
STEM_score_III_PROMPT.png (viridis: 0 dark blue, 1 yellow). Score maps are written for up to
--max-score-maps prompts; a larger vocabulary is segmented chunk by chunk without keeping per-class scores
(bounded memory). Files that cannot be read as images are skipped with a warning that names them.
"""
import argparse
import glob
import os
import os.path as osp
import sys
from collections import Counter

import mmcv
from PIL import Image
from tqdm import tqdm

from mmseg_digseg.apis import init_digseg, render_result, segment
from mmseg_digseg.apis.render import file_safe
from mmseg_digseg.datasets import load_vocabulary
from mmseg_digseg.models.segmentors.digseg import INFERENCE_PRESETS

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='DiGSeg inference with arbitrary prompts')
    parser.add_argument('input', help='an image, a folder (its images), or a quoted glob such as "photos/*.jpg"')
    parser.add_argument('--config', required=True)
    parser.add_argument('--checkpoint', required=True)
    parser.add_argument('--prompts', help='comma-separated class prompts; default: the checkpoint\'s classes. '
                        'Use "|" between prompts instead if a prompt holds synonyms with commas.')
    parser.add_argument('--vocabulary', help='a shipped vocabulary (e.g. ade20k_150, ade20k_847) or a .txt file '
                        'with one class a line, instead of --prompts')
    parser.add_argument('--topk', type=int, help='denoise only the K classes with the best one-step pre-score')
    parser.add_argument('--preset', choices=list(INFERENCE_PRESETS), help='ensemble x steps (default: the config\'s)')
    parser.add_argument('--mask-readout', choices=['vae', 'learned'],
                        help='binary mode: read masks with the full VAE decode or the learned readout '
                        '(default: the config\'s)')
    parser.add_argument('--max-score-maps', type=int, default=32)
    parser.add_argument('--out-dir', default='work_dirs/infer')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--opacity', type=float, default=0.5)
    return parser.parse_args(argv)


def split_prompts(text):
    if text is None:
        return None
    prompts = [p.strip() for p in text.split('|' if '|' in text else ',')]
    if not any(prompts):
        raise SystemExit('--prompts is empty: give at least one class prompt, e.g. --prompts "cat,sofa,floor".')
    if '' in prompts:
        raise SystemExit(f'--prompts has an empty entry: "{text}".')
    return prompts


def list_inputs(source):
    """An image file, a folder's image files (by extension, not recursive) or a glob's files, sorted."""
    if osp.isdir(source):
        files = [p for p in glob.glob(osp.join(source, '*')) if p.lower().endswith(IMAGE_EXTENSIONS)]
    elif osp.isfile(source):
        files = [source]
    else:
        files = [p for p in glob.glob(source, recursive=True) if osp.isfile(p)]
    if not files:
        raise SystemExit(f'No images found at "{source}": give an image, a folder of images '
                         f'({", ".join(IMAGE_EXTENSIONS)}) or a quoted glob such as "photos/*.jpg".')
    return sorted(files)


def output_stems(paths):
    """File stems for the outputs; inputs sharing a stem (a.png, a.jpg) keep their extension apart."""
    stems = [osp.splitext(osp.basename(p))[0] for p in paths]
    repeated = {s for s, n in Counter(stems).items() if n > 1}
    return [osp.basename(p).replace('.', '_') if s in repeated else s for p, s in zip(paths, stems)]


def read_image(path):
    """The image as stored (any depth and channel count), or None with the reason when it is unreadable."""
    try:
        image = mmcv.imread(path, flag='unchanged')
    except Exception as error:  # noqa: BLE001  (any decoder failure means: skip this file)
        return None, f'{type(error).__name__}: {error}'
    if image is None or image.size == 0:
        return None, 'not a decodable image'
    return image, None


def main(argv=None):
    args = parse_args(argv)
    if args.prompts and args.vocabulary:
        raise SystemExit('Give either --prompts or --vocabulary, not both.')
    prompts = load_vocabulary(args.vocabulary) if args.vocabulary else split_prompts(args.prompts)
    paths = list_inputs(args.input)
    options = {'model.test_cfg.mask_readout': args.mask_readout} if args.mask_readout else None
    model = init_digseg(args.config, args.checkpoint, device=args.device, cfg_options=options)
    names = prompts or model.class_names
    with_scores = len(names) <= args.max_score_maps
    model.test_cfg.update(return_logits=with_scores, topk_classes=args.topk)
    if args.preset:
        model.test_cfg.update(INFERENCE_PRESETS[args.preset])

    os.makedirs(args.out_dir, exist_ok=True)
    skipped = []
    for path, stem in zip(tqdm(paths, desc='Segmenting', unit='image', file=sys.stderr), output_stems(paths)):
        image, problem = read_image(path)
        if image is None:
            skipped.append(path)
            tqdm.write(f'Warning: skipped {path} ({problem}).', file=sys.stderr)
            continue
        result = segment(model, image, prompts)
        overlay, maps, present = render_result(model, image, result, names, args.opacity)
        overlay_path = osp.join(args.out_dir, f'{stem}_overlay.png')
        Image.fromarray(overlay).save(overlay_path)
        for i, score_map in enumerate(maps):
            Image.fromarray(score_map).save(osp.join(args.out_dir, f'{stem}_score_{i:03d}_{file_safe(names[i])}.png'))
        tqdm.write(f'Wrote {overlay_path} and {len(maps)} score maps to {args.out_dir}; labels present: {present}')
    summary = (f'Done: {len(paths) - len(skipped)} of {len(paths)} image(s) segmented into {args.out_dir}'
               + (f'; skipped {len(skipped)} unreadable: {skipped}' if skipped else '.'))
    if len(skipped) == len(paths):
        raise SystemExit(f'{summary} No input could be read as an image.')
    print(summary)


if __name__ == '__main__':
    main()
