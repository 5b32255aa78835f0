"""Segment an image with any prompts and write an overlay with a legend plus one score map per prompt.

    python tools/infer.py IMAGE --config C --checkpoint K --prompts "disc,ring,background" [--out-dir D]
    python tools/infer.py IMAGE --config C --checkpoint K --vocabulary ade20k_847 --topk 30 --preset 4x2

Labels follow the order of the prompts. Score maps are written for up to --max-score-maps prompts; a larger
vocabulary is segmented chunk by chunk without keeping per-class scores (bounded memory).
"""
import argparse
import os
import os.path as osp

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import mmcv  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from mmseg_digseg.apis import init_digseg, segment  # noqa: E402
from mmseg_digseg.datasets import load_vocabulary, to_bgr8  # noqa: E402
from mmseg_digseg.models.segmentors.digseg import INFERENCE_PRESETS  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description='DiGSeg inference with arbitrary prompts')
    parser.add_argument('image')
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
    return parser.parse_args()


def split_prompts(text):
    if text is None:
        return None
    prompts = [p.strip() for p in text.split('|' if '|' in text else ',')]
    if not any(prompts):
        raise SystemExit('--prompts is empty: give at least one class prompt, e.g. --prompts "cat,sofa,floor".')
    if '' in prompts:
        raise SystemExit(f'--prompts has an empty entry: "{text}".')
    return prompts


def main():
    args = parse_args()
    if args.prompts and args.vocabulary:
        raise SystemExit('Give either --prompts or --vocabulary, not both.')
    prompts = load_vocabulary(args.vocabulary) if args.vocabulary else split_prompts(args.prompts)
    options = {'model.test_cfg.mask_readout': args.mask_readout} if args.mask_readout else None
    model = init_digseg(args.config, args.checkpoint, device=args.device, cfg_options=options)
    names = prompts or model.class_names
    with_scores = len(names) <= args.max_score_maps
    model.test_cfg.update(return_logits=with_scores, topk_classes=args.topk)
    if args.preset:
        model.test_cfg.update(INFERENCE_PRESETS[args.preset])
    result = segment(model, args.image, prompts)
    image = mmcv.imread(args.image, flag='unchanged')
    rgb = to_bgr8(image)[0][..., ::-1]
    labels = result.pred_sem_seg.data[0].cpu().numpy()

    os.makedirs(args.out_dir, exist_ok=True)
    stem = osp.splitext(osp.basename(args.image))[0]
    colours = (plt.get_cmap('tab20')(np.arange(len(names)) % 20)[:, :3] * 255).astype(np.uint8)
    overlay = (rgb * (1 - args.opacity) + colours[labels] * args.opacity).astype(np.uint8)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(overlay)
    ax.axis('off')
    present = np.unique(labels)
    ax.legend(handles=[Patch(color=colours[i] / 255, label=names[i]) for i in present],
              loc='upper left', bbox_to_anchor=(1, 1), fontsize=8)
    overlay_path = osp.join(args.out_dir, f'{stem}_overlay.png')
    fig.savefig(overlay_path, bbox_inches='tight', dpi=100)
    plt.close(fig)
    num_maps = len(names) if with_scores else 0
    scores = model.logits_to_scores(result.seg_logits.data).cpu().numpy() if with_scores else []
    for i in range(num_maps):
        safe = ''.join(c if c.isalnum() else '_' for c in names[i].split(',')[0].strip())
        plt.imsave(osp.join(args.out_dir, f'{stem}_score_{i:03d}_{safe}.png'), scores[i], cmap='viridis',
                   vmin=0, vmax=1)
    print(f'Wrote {overlay_path} and {num_maps} score maps to {args.out_dir}; '
          f'labels present: {[names[i] for i in present]}')


if __name__ == '__main__':
    main()
