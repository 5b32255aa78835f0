"""The ceiling of palette mode with a config's VAE: ground-truth colour masks through the VAE and back.

    python tools/analysis_tools/palette_roundtrip.py CONFIG [--split val] [--palette-sizes 6 19 150]
        [--max-images N] [--out-dir DIR]

Each ground-truth label map of the split is painted with the palette (``DiGSegPalette``'s colours),
VAE-encoded, decoded, and every pixel takes the nearest palette colour's class: what palette mode would
predict if the U-Net produced the painted latent exactly. For a palette size N larger than the dataset's
C classes, the classes get C colours drawn (seeded) from the N-colour palette and decoding picks the
nearest of all N, so the mIoU is what a vocabulary of N classes would allow. Prints a markdown table
(per-class IoU, mIoU, colour-mask PSNR, the palette's minimum colour distance) and writes
``palette_roundtrip.json`` and an example image (ground truth | painted | decoded | nearest colour).
"""
import argparse
import json
import os
import os.path as osp

import numpy as np
import torch
from mmengine.config import Config, DictAction
from tqdm import tqdm


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Palette-mode ceiling of a config\'s VAE.')
    p.add_argument('config')
    p.add_argument('--split', default='val', choices=['train', 'val', 'test'])
    p.add_argument('--palette-sizes', type=int, nargs='+', default=None,
                   help='palette sizes to measure (default: the dataset\'s number of classes)')
    p.add_argument('--max-images', type=int, default=None)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out-dir', default='work_dirs/palette_roundtrip')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='key=value overrides of the config')
    return p.parse_args(argv)


def load_label_maps(cfg, split, max_images):
    """The split's ground-truth label maps as MMSeg loads them (reduce_zero_label and all)."""
    from mmseg.registry import DATASETS
    loader = cfg.get(f'{split}_dataloader')
    dataset_cfg = dict(loader.dataset, pipeline=[dict(type='LoadAnnotations')])
    dataset = DATASETS.build(dataset_cfg)
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    return [dataset[i]['gt_seg_map'].astype(np.int64) for i in range(count)], list(dataset.metainfo['classes'])


def intersect_union(pred, label, num_classes, ignore_index=255):
    valid = label != ignore_index
    pred, label = pred[valid], label[valid]
    inter = np.bincount(label[pred == label], minlength=num_classes)[:num_classes]
    area_pred = np.bincount(pred[pred < num_classes], minlength=num_classes)[:num_classes]
    area_label = np.bincount(label, minlength=num_classes)[:num_classes]
    return inter, area_pred + area_label - inter


@torch.no_grad()
def measure(vae, labels, num_classes, palette_size, seed, example_path=None):
    """mIoU, per-class IoU and PSNR of the palette round trip with an N-colour palette."""
    from mmseg_digseg.models.segmentors.digseg_palette import (colour_distance_logits, min_colour_distance, paint,
                                                               palette_colours)
    from mmseg_digseg.models.segmentors.digseg import pad_to_multiple
    palette = palette_colours(palette_size)
    generator = torch.Generator().manual_seed(seed)
    assigned = torch.randperm(palette_size, generator=generator)[:num_classes]  # class c -> palette colour
    if palette_size == num_classes:
        assigned = torch.arange(num_classes)  # the palette test time uses: class c -> colour c
    to_class = torch.full((palette_size, ), num_classes)  # a colour no class has -> a wrong label
    to_class[assigned] = torch.arange(num_classes)
    inter, union, sq_err, count = np.zeros(num_classes), np.zeros(num_classes), 0.0, 0
    for index, label in enumerate(labels):  # label maps may differ in size: one at a time through the VAE
        gt = torch.from_numpy(label)[None]
        painted = paint(gt, palette[assigned], 255)
        decoded = vae.decode(vae.encode(pad_to_multiple(painted, vae.downsample_factor, 0.0)))
        decoded = decoded[..., :gt.shape[-2], :gt.shape[-1]]
        nearest = colour_distance_logits(decoded, palette, 1.0).argmax(1)[0]
        i, u = intersect_union(to_class[nearest].numpy(), label, num_classes)
        inter, union = inter + i, union + u
        valid = torch.from_numpy(label != 255)
        sq_err += float(((decoded.clamp(-1, 1) - painted)**2).sum(1)[0][valid].sum()) / 3
        count += int(valid.sum())
        if example_path and index == 0:
            save_example(example_path, label, painted[0], decoded[0], palette[nearest].permute(2, 0, 1))
    with np.errstate(invalid='ignore', divide='ignore'):
        ious = np.where(union > 0, inter / union, np.nan) * 100
    psnr = 10 * np.log10(4.0 / max(sq_err / max(count, 1), 1e-12))  # images span [-1, 1]: peak-to-peak 2
    return dict(palette_size=palette_size, min_colour_distance=round(min_colour_distance(palette), 2),
                mIoU=round(float(np.nanmean(ious)), 2), per_class_iou=[round(float(v), 2) for v in ious],
                psnr_db=round(float(psnr), 2), images=len(labels))


def save_example(path, label, painted, decoded, nearest):
    """One image: ground truth | painted | VAE round trip | nearest colour ((3, H, W) in [-1, 1])."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 4, figsize=(10, 2.8))
    panels = [label] + [((x.clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy() for x in (painted, decoded, nearest)]
    for ax, image, title in zip(axes, panels, ['ground truth', 'painted', 'VAE round trip', 'nearest colour']):
        ax.imshow(image, interpolation='nearest', cmap='tab20' if image is label else None)
        ax.set_title(title, fontsize=9)
        ax.axis('off')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    import mmseg_digseg  # noqa: F401  (registers DiGSeg's modules)
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    vae = MODELS.build(cfg.model.backbone).float().eval()
    labels, classes = load_label_maps(cfg, args.split, args.max_images)
    sizes = args.palette_sizes or [len(classes)]
    if min(sizes) < len(classes):
        raise SystemExit(f'--palette-sizes must be at least the dataset\'s {len(classes)} classes.')
    os.makedirs(args.out_dir, exist_ok=True)
    results = []
    for size in tqdm(sizes, desc='palette sizes'):
        example = osp.join(args.out_dir, f'palette_roundtrip_{size}.png')
        results.append(measure(vae, labels, len(classes), size, args.seed, example))
    print(f'\nPalette round trip, {args.config}, {args.split} split ({len(labels)} images):\n')
    print('| palette colours | min colour distance (8-bit) | colour-mask PSNR (dB) | '
          + ' | '.join(classes) + ' | mIoU |')
    print('|' + '---|' * (len(classes) + 4))
    for r in results:
        print(f"| {r['palette_size']} | {r['min_colour_distance']:.1f} | {r['psnr_db']:.2f} | "
              + ' | '.join(f'{v:.2f}' for v in r['per_class_iou']) + f" | **{r['mIoU']:.2f}** |")
    with open(osp.join(args.out_dir, 'palette_roundtrip.json'), 'w') as f:
        json.dump(dict(config=args.config, split=args.split, classes=classes, results=results), f, indent=1)
    print(f'\nWrote {args.out_dir}/palette_roundtrip.json and palette_roundtrip_N.png examples.')
    return results


if __name__ == '__main__':
    main()
