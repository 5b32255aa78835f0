"""Fit the tiny VAE of the embedded model stack and save it in the Stable Diffusion layout.

The result loads exactly like the VAE of Stable Diffusion::

    AutoencoderKL.from_pretrained('checkpoints/tiny_sd', subfolder='vae')

It is trained on SynthShapes, rendered on the fly (never the same scene twice, so nothing to
overfit): RGB images and binary class masks (both in [-1, 1], masks replicated to 3 channels),
because DiGSeg VAE-encodes both the image and the mask that it denoises. Two properties matter:

- a binary mask survives the round trip encode -> posterior mode -> decode -> mean over channels
  -> ``> 0`` (mean IoU well above 0.95): the mask latents are the U-Net's targets;
- the image latent keeps what tells the classes apart (the stripes, checks and dots of each shape):
  image round-trip PSNR on held-out scenes.

``scaling_factor`` is measured on data after the fit (1 / std of the posterior means of images and
masks), as Stable Diffusion's 0.18215 was, and written into ``vae/config.json``.

The defaults are the 16-channel recipe (widths 32/32/64, 16 latent channels, 0.755 M parameters,
3.0 MB fp32 safetensors, 2500 iterations of 4 images + 4 masks, peak lr 2e-4, image L1 + 2 x MSE,
mask L1, bf16 autocast)::

    OMP_NUM_THREADS=1 python tools/fit_tiny_vae.py --out work_dirs/vae_fit/lc16

1117 s (18.6 min) on one thread of a 2-core machine shared with other jobs. Held out: image PSNR
19.1 dB (the first recipe: 14.9), foreground-mask round-trip IoU 0.933 (first recipe: 0.972), and
still improving when the schedule ends (PSNR 15.5 / 17.3 / 18.2 / 19.2 dB after 250 / 500 / 1000 /
1500 iterations).

The committed ``checkpoints/tiny_sd/vae`` is that fit continued (``--init``) for two more cosine cycles
of 4000 iterations each, the second on other scenes (``--seed 1``); 761 s + 773 s with two threads,
nothing else running::

    python tools/fit_tiny_vae.py --out work_dirs/vae_fit/lc16                       # as above
    python tools/fit_tiny_vae.py --init work_dirs/vae_fit/lc16 --out work_dirs/vae_fit/c1 --iters 4000 --threads 2
    python tools/fit_tiny_vae.py --init work_dirs/vae_fit/c1 --out work_dirs/vae_fit/c2 --iters 4000 --threads 2 \
        --seed 1

Held out (``--eval-only``, seed 0's scenes): image PSNR 19.10 -> 21.35 -> 23.29 dB, foreground-mask
round-trip IoU 0.933 -> 0.973 -> 0.984.

The first recipe (4 latent channels, widths 32/32/32, 1.2 MB, about 10 minutes), kept for comparison::

    OMP_NUM_THREADS=1 python tools/fit_tiny_vae.py --out work_dirs/vae_fit/lc4 --latent-channels 4 \
        --widths 32 32 32 --iters 1000 --batch-size 8 --lr 2e-3 --mask-weight 2 --image-mse-weight 0 \
        --no-bf16

Palette mode (``DiGSegPalette``) VAE-encodes colour-painted label maps, which a VAE fitted on images and
binary masks turns grey (docs/benchmarks.md). ``--palette-masks N`` adds N painted label maps per step to the
mix, each image's classes drawn (without replacement) from the first ``--palette-size`` palette colours, so
that any colour of the palette and any assignment of colours to classes is kept::

    python tools/fit_tiny_vae.py --init checkpoints/tiny_sd --out checkpoints/tiny_sd_palette --iters 3000 \
        --threads 2 --palette-masks 4 --eval-every 500

made the committed ``checkpoints/tiny_sd_palette`` (921 s on two threads, nothing else running; December 3). Held
out, against the shipped VAE it started from: palette round-trip mIoU 31.89 -> 80.16 (6 classes in the 6-colour
palette) and 29.36 -> 68.01 (6 classes in 150 colours), image PSNR 23.29 -> 23.90 dB, foreground-mask IoU
0.984 -> 0.986.

Stable Diffusion's VAE was fitted on far broader images than any benchmark. ``--mix broad`` fits on the broad
unlabelled mix of ``mmseg_digseg.datasets.unlabelled_mix`` instead: 6-class scenes, procedural texture patchworks
and crops of the images matplotlib ships, never the 49-class scenes; half the masks are patchwork regions::

    python tools/fit_tiny_vae.py --init checkpoints/tiny_sd --out checkpoints/tiny_sd_broad --iters 4000 \\
        --threads 2 --mix broad --eval-every 500

made the committed ``checkpoints/tiny_sd_broad`` (740 s on two threads, nothing else running but 30 s of unit
tests; December 7). Held out, against the shipped VAE it started from: image PSNR on the 6-class scenes 23.29 ->
23.33 dB, on the 49-class scenes (in neither mix) 20.85 -> 21.93 dB, on the broad mix 18.27 -> 22.54 dB;
foreground-mask IoU 0.984 -> 0.989; palette round-trip mIoU 31.89 -> 84.93 (6 colours) and 29.36 -> 73.82
(6 of 150), though no painted map was in its mix. The same 4,000 iterations on 6-class scenes alone (the
``--mix synth_shapes`` control) and what either does for segmentation: docs/paper_recipe.md, "A tiny VAE
fitted on a broad unlabelled mix".

Evaluate a saved VAE (held-out image PSNR, mask round-trip IoU, palette round-trip mIoU, latent std) without
fitting::

    python tools/fit_tiny_vae.py --eval-only checkpoints/tiny_sd
"""
import argparse
import math
import os
import os.path as osp
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a plain checkout

from mmseg_digseg.datasets.synth_shapes import CLASSES, MANY_CLASSES, render_sample  # noqa: E402
from mmseg_digseg.datasets.unlabelled_mix import render_patchwork, sample_mix_image  # noqa: E402
from mmseg_digseg.models.segmentors.digseg_palette import paint, palette_colours  # noqa: E402

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=('DownEncoderBlock2D', ) * 3,  # 3 blocks -> downsampling factor 4 (64 -> 16)
    up_block_types=('UpDecoderBlock2D', ) * 3,
    # Width 64 only at the 16x16 level (cheap there); 32 at 64x64 and 32x32 keeps the decoder, which
    # DiGSeg's single-step objective runs with autograd every step, fast. fp32 safetensors ~3.0 MB.
    block_out_channels=(32, 32, 64),
    layers_per_block=1,
    # 16 channels per 4x4 patch (48 values): a *linear* patch code with 16 components already gives
    # 26.8 dB on SynthShapes (4: 20.8 dB, 8: 23.3 dB), so 4 channels cap what the image latent keeps.
    latent_channels=16,
    # 8 groups, not 32: one-channel groups normalise away every per-channel level, and masks then
    # train much slower.
    norm_num_groups=8,
    sample_size=64,
)

# Disjoint random streams for training, the held-out evaluation and the latent statistics.
_TRAIN_STREAM, _EVAL_STREAM, _STATS_STREAM = 100, 200, 300


def to_tensor_image(img):
    """(H, W, 3) uint8 -> (3, H, W) float in [-1, 1]."""
    return torch.from_numpy(img).permute(2, 0, 1).float() / 127.5 - 1.0


def to_tensor_mask(mask):
    """(H, W) bool -> (3, H, W) float in {-1, 1} (replicated, the VAE takes RGB)."""
    m = torch.from_numpy(mask.astype(np.float32)) * 2.0 - 1.0
    return m.expand(3, -1, -1).clone()


def decode_mask(out):
    """Decoded (N, 3, H, W) -> (N, H, W) bool foreground."""
    return out.mean(dim=1) > 0


def class_mask(rng, label, num_classes):
    """One class mask of a scene: mostly a present class (the masks that matter), sometimes any class, so
    that empty masks (absent class) are seen too."""
    cls = int(rng.choice(np.unique(label))) if rng.random() < 0.8 else int(rng.integers(0, num_classes))
    return to_tensor_mask(label == cls)


def sample_batch(rng, n_img, n_mask=None, size=64, mix='synth_shapes'):
    """``n_img`` images and ``n_mask`` masks.

    ``mix='synth_shapes'``: 6-class scenes; the masks are of the first ``n_mask`` scenes, one class each.
    ``mix='broad'``: images of the broad unlabelled mix (``mmseg_digseg.datasets.unlabelled_mix``); every
    other mask is a fresh 6-class scene's class mask, the rest a patchwork region (one in five empty).
    """
    n_mask = n_img if n_mask is None else n_mask
    if mix == 'broad':
        imgs = [to_tensor_image(sample_mix_image(rng, size)[0]) for _ in range(n_img)]
        masks = []
        for i in range(n_mask):
            if i % 2 == 0:
                masks.append(class_mask(rng, render_sample(rng, size)[1], len(CLASSES)))
            else:
                regions = render_patchwork(rng, size)[1]
                region = regions[rng.integers(0, len(regions))]
                masks.append(to_tensor_mask(region if rng.random() < 0.8 else np.zeros_like(region)))
        return torch.stack(imgs), torch.stack(masks)
    imgs, masks = [], []
    for i in range(max(n_img, n_mask)):
        img, label = render_sample(rng, size)
        if i < n_img:
            imgs.append(to_tensor_image(img))
        if i < n_mask:
            masks.append(class_mask(rng, label, len(CLASSES)))
    return torch.stack(imgs), torch.stack(masks)


def paint_labels(rng, labels, palette):
    """(N, H, W) int label maps -> (N, 3, H, W) colour masks in [-1, 1]: each map's classes get distinct
    colours drawn from ``palette`` (P, 3)."""
    num_classes = max(int(label.max()) for label in labels) + 1
    colours = torch.stack([palette[torch.from_numpy(rng.permutation(len(palette))[:num_classes])]
                           for _ in labels])
    return paint(torch.from_numpy(np.stack(labels)).long(), colours)


def sample_palette_masks(rng, n, palette, size=64):
    """``n`` painted label maps of freshly rendered scenes (their images are not used), half of them of the
    49-class variant (2-5 objects of 49 shape-texture classes), half of the 6-class one."""
    variants = ['many' if rng.random() < 0.5 else 'basic' for _ in range(n)]
    return paint_labels(rng, [render_sample(rng, size, variant)[1] for variant in variants], palette)


def heldout_masks(seed, num_fg, size=64):
    """Fixed held-out class masks: ``num_fg`` foreground ones, plus background masks of the same
    images. Returns (fg_masks, bg_masks, images), numpy arrays."""
    fg, bg, imgs = [], [], []
    i = 0
    while len(fg) < num_fg:
        img, label = render_sample(np.random.default_rng([seed, _EVAL_STREAM, i]), size)
        i += 1
        imgs.append(img)
        bg.append(label == 0)
        fg.extend(label == c for c in np.unique(label) if c != 0)
    return np.stack(fg[:num_fg]), np.stack(bg), np.stack(imgs)


def iou(pred, gt):
    """Per-mask IoU of (N, H, W) bool arrays (1.0 when both are empty)."""
    inter = (pred & gt).sum(axis=(1, 2))
    union = (pred | gt).sum(axis=(1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def psnr_uint8(rec, ref):
    """Mean per-image PSNR (dB) of (N, 3, H, W) tensors in [-1, 1], both quantised to uint8."""
    rec = ((rec.float().clamp(-1, 1) + 1) * 127.5).round()
    ref = ((ref.float() + 1) * 127.5).round()
    mse = ((rec - ref)**2).mean(dim=(1, 2, 3))
    return (10 * torch.log10(255.0**2 / mse.clamp_min(1e-8))).mean().item()


@torch.no_grad()
def roundtrip(vae, x, batch=50):
    dtype = vae.dtype
    out = []
    for i in range(0, len(x), batch):
        z = vae.encode(x[i:i + batch].to(dtype)).latent_dist.mode()
        out.append(vae.decode(z).sample.float())
    return torch.cat(out)


@torch.no_grad()
def palette_miou(vae, seed, palette_size, num_img=50, size=64):
    """Palette round trip on held-out scenes: the 6 classes painted with distinct colours of the first
    ``palette_size`` palette colours (the first 6 when ``palette_size`` is 6, as palette mode's test time;
    otherwise drawn), decoded, each pixel the nearest of all ``palette_size`` colours; mIoU in %."""
    palette = palette_colours(palette_size)
    rng = np.random.default_rng([seed, _EVAL_STREAM, palette_size])
    labels = np.stack([render_sample(np.random.default_rng([seed, _EVAL_STREAM, i]), size)[1]
                       for i in range(num_img)])
    if palette_size == len(CLASSES):
        assigned = torch.arange(len(CLASSES)).expand(num_img, -1)
    else:
        assigned = torch.stack([torch.from_numpy(rng.permutation(palette_size)[:len(CLASSES)])
                                for _ in range(num_img)])
    painted = paint(torch.from_numpy(labels).long(), palette[assigned])
    decoded = roundtrip(vae, painted)
    nearest = torch.cdist(decoded.flatten(2).transpose(1, 2), palette.expand(num_img, -1, -1)).argmin(-1)
    # colour index -> class, per image (a colour no class of that image has: -1, always wrong)
    to_class = torch.full((num_img, palette_size), -1, dtype=torch.long)
    to_class.scatter_(1, assigned, torch.arange(len(CLASSES)).expand(num_img, -1))
    pred = torch.gather(to_class, 1, nearest).view(labels.shape).numpy()
    ious = [((pred == c) & (labels == c)).sum() / ((pred == c) | (labels == c)).sum()
            for c in range(len(CLASSES)) if (labels == c).any()]
    return float(np.mean(ious)) * 100


@torch.no_grad()
def evaluate(vae, seed, num_fg=200, num_img=100):
    """Mask round-trip IoU (foreground masks; all present masks) and image PSNR, held out."""
    was_training = vae.training
    vae.eval()
    fg, bg, imgs = heldout_masks(seed, num_fg)
    fg_t = torch.stack([to_tensor_mask(m) for m in fg])
    bg_t = torch.stack([to_tensor_mask(m) for m in bg])
    fg_iou = iou(decode_mask(roundtrip(vae, fg_t)).numpy(), fg)
    bg_iou = iou(decode_mask(roundtrip(vae, bg_t)).numpy(), bg)
    img_t = torch.stack([to_tensor_image(im) for im in imgs[:num_img]])
    psnr = psnr_uint8(roundtrip(vae, img_t), img_t)
    vae.train(was_training)
    return dict(
        fg_iou_mean=float(fg_iou.mean()),
        fg_iou_min=float(fg_iou.min()),
        all_iou_mean=float(np.concatenate([fg_iou, bg_iou]).mean()),
        num_fg=len(fg_iou),
        num_all=len(fg_iou) + len(bg_iou),
        num_img=len(img_t),
        img_psnr=psnr)


def heldout_images(seed, source, num_img, size=64):
    """Fixed held-out (N, 3, H, W) images in [-1, 1] of another ``source``: ``'many'``, the 49-class SynthShapes
    scenes (not in either mix), or ``'broad'``, the broad unlabelled mix."""
    rngs = [np.random.default_rng([seed, _EVAL_STREAM, 1000 + i]) for i in range(num_img)]
    return torch.stack([to_tensor_image(render_sample(rng, size, 'many')[0] if source == 'many' else
                                        sample_mix_image(rng, size)[0]) for rng in rngs])


@torch.no_grad()
def heldout_psnr(vae, seed, source, num_img=100):
    """Image round-trip PSNR on :func:`heldout_images`."""
    was_training = vae.training
    vae.eval()
    img_t = heldout_images(seed, source, num_img)
    psnr = psnr_uint8(roundtrip(vae, img_t), img_t)
    vae.train(was_training)
    return psnr


@torch.no_grad()
def latent_stats(vae, seed, n=128):
    """Std of posterior means over held-out images and masks (for ``scaling_factor``)."""
    was_training = vae.training
    vae.eval()
    imgs, masks = sample_batch(np.random.default_rng([seed, _STATS_STREAM]), n)
    dtype = vae.dtype
    zi = vae.encode(imgs.to(dtype)).latent_dist.mean.float()
    zm = vae.encode(masks.to(dtype)).latent_dist.mean.float()
    vae.train(was_training)
    return dict(std=torch.cat([zi, zm]).std().item(), img_std=zi.std().item(), mask_std=zm.std().item(),
                mean=torch.cat([zi, zm]).mean().item())


def save_figure(path, vaes, seed, num=8, size=64):
    """A PNG: ``num`` held-out 49-class scenes and ``num`` broad-mix images (left and right half), the originals
    in the first row, then one row of round trips per VAE of ``vaes`` ({name: DIR/vae folder or loaded VAE})."""
    from diffusers import AutoencoderKL
    from PIL import Image, ImageDraw
    x = torch.cat([heldout_images(seed, 'many', num, size), heldout_images(seed, 'broad', num, size)])
    rows = [x]
    for name, vae in vaes.items():
        vae = vae if vae is not None else AutoencoderKL.from_pretrained(name, subfolder='vae')
        rows.append(roundtrip(vae.float().eval(), x).clamp(-1, 1))
    grid = torch.cat([torch.cat(list(row), dim=2) for row in rows], dim=1)  # (3, rows * size, 2 * num * size)
    grid = ((grid + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    label_w = 150
    canvas = Image.new('RGB', (label_w + grid.shape[1] * 2, grid.shape[0] * 2), 'white')
    canvas.paste(Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST), (label_w, 0))
    draw = ImageDraw.Draw(canvas)
    for r, name in enumerate(['held out'] + [f'through {osp.basename(osp.normpath(n))}' for n in vaes]):
        draw.text((4, r * size * 2 + size - 6), name, fill='black')
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    canvas.save(path)
    print(f'figure: {path} (left: 49-class scenes, right: the broad mix)')


def save_requested_figure(args, folder, vae):
    """``--figure``: the round trips through ``vae`` (saved in ``folder``), after those through ``--compare``."""
    if args.figure:
        save_figure(args.figure, {**({args.compare: None} if args.compare else {}), folder: vae}, args.seed)


def report(vae, seed):
    metrics = evaluate(vae, seed)
    stats = latent_stats(vae, seed)
    scale = vae.config.scaling_factor
    print(f'mask round-trip IoU, {metrics["num_fg"]} held-out foreground masks: '
          f'mean {metrics["fg_iou_mean"]:.4f}, min {metrics["fg_iou_min"]:.4f}')
    print(f'mask round-trip IoU, all {metrics["num_all"]} present masks (incl. background): '
          f'mean {metrics["all_iou_mean"]:.4f}')
    print(f'image PSNR ({metrics["num_img"]} held-out images): {metrics["img_psnr"]:.2f} dB')
    for source, what in (('many', '49-class SynthShapes scenes, in neither mix'), ('broad', 'the broad mix')):
        metrics[f'img_psnr_{source}'] = heldout_psnr(vae, seed, source)
        print(f'image PSNR (100 held-out images, {what}): {metrics[f"img_psnr_{source}"]:.2f} dB')
    for size in (len(CLASSES), 150):
        metrics[f'palette_miou_{size}'] = palette_miou(vae, seed, size)
        print(f'palette round-trip mIoU, {len(CLASSES)} classes in {size} colours (50 held-out scenes): '
              f'{metrics[f"palette_miou_{size}"]:.2f}')
    print(f'scaled latent std: all {stats["std"] * scale:.3f}, images {stats["img_std"] * scale:.3f}, '
          f'masks {stats["mask_std"] * scale:.3f} (mean {stats["mean"] * scale:.3f}; '
          f'scaling_factor {scale:.5f})')
    return metrics


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', default='checkpoints/tiny_sd', help='model folder; the VAE goes to OUT/vae')
    p.add_argument('--eval-only', metavar='DIR', help='only evaluate the VAE in DIR/vae (no fit)')
    p.add_argument('--figure', metavar='PNG', help='write held-out images (49-class scenes, then the broad mix) '
                   'above their round trips through the evaluated or fitted VAE')
    p.add_argument('--compare', metavar='DIR', help='with --figure: a row of round trips through DIR/vae too')
    p.add_argument('--init', metavar='DIR',
                   help='continue fitting the VAE in DIR/vae (its architecture; --latent-channels, --widths, '
                   '--layers-per-block and --norm-groups are ignored) instead of a fresh one')
    p.add_argument('--iters', type=int, default=2500)
    p.add_argument('--batch-size', type=int, default=4, help='images per step')
    p.add_argument('--mask-batch-size', type=int, default=None, help='masks per step (default: batch size)')
    # Peak learning rate: 2e-3 (the first recipe) keeps images at the blurry ~15 dB plateau; lower
    # rates learn the textures faster (300-iteration pilots: 6e-4 15.8 dB, 3e-4 16.3, 1.5e-4 16.9).
    p.add_argument('--lr', type=float, default=2e-4)
    p.add_argument('--kl-weight', type=float, default=1e-6)
    p.add_argument('--image-weight', type=float, default=1.0, help='weight of the image L1 loss')
    p.add_argument('--image-mse-weight', type=float, default=2.0, help='weight of the image MSE loss')
    p.add_argument('--mask-weight', type=float, default=1.0, help='weight of the mask L1 loss')
    p.add_argument('--mix', choices=['synth_shapes', 'broad'], default='synth_shapes',
                   help='training images: 6-class SynthShapes scenes, or the broad unlabelled mix (6-class scenes, '
                   'procedural texture patchworks, crops of the images matplotlib ships; the 49-class scenes in '
                   'neither)')
    p.add_argument('--palette-masks', type=int, default=0,
                   help='colour-painted label maps per step (palette mode\'s masks; default none)')
    p.add_argument('--palette-size', type=int, default=150,
                   help='the painted maps draw their colours from the first N palette colours')
    p.add_argument('--palette-weight', type=float, default=1.0, help='weight of the painted maps\' L1 loss')
    p.add_argument('--latent-channels', type=int, default=VAE_CONFIG['latent_channels'])
    p.add_argument('--widths', type=int, nargs=3, default=VAE_CONFIG['block_out_channels'])
    p.add_argument('--layers-per-block', type=int, default=VAE_CONFIG['layers_per_block'])
    p.add_argument('--norm-groups', type=int, default=VAE_CONFIG['norm_num_groups'])
    p.add_argument('--bf16', action=argparse.BooleanOptionalAction, default=True,
                   help='bfloat16 autocast for the fit (2-3x faster on CPUs with AMX / AVX512-BF16; use '
                   '--no-bf16 elsewhere); weights stay fp32')
    p.add_argument('--save-dtype', choices=['fp32', 'fp16'], default='fp32')
    p.add_argument('--seed', type=int, default=0)
    # One thread: on a shared 2-core machine, two OpenMP threads slow down several-fold as soon
    # as anything else runs; one thread is also the reproducible setting.
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--log-every', type=int, default=50)
    p.add_argument('--eval-every', type=int, default=250, help='held-out PSNR / IoU every N iterations (0: end only)')
    return p.parse_args()


def main():
    args = parse_args()
    from diffusers import AutoencoderKL

    torch.set_num_threads(args.threads)
    if args.eval_only:
        vae = AutoencoderKL.from_pretrained(args.eval_only, subfolder='vae').eval()
        print(f'{args.eval_only}/vae: {sum(p.numel() for p in vae.parameters()) / 1e6:.3f} M parameters, '
              f'{vae.dtype}, latent channels {vae.config.latent_channels}')
        report(vae, args.seed)
        save_requested_figure(args, args.eval_only, vae)
        return

    torch.manual_seed(args.seed)
    rng = np.random.default_rng([args.seed, _TRAIN_STREAM])
    n_mask = args.batch_size if args.mask_batch_size is None else args.mask_batch_size
    if args.palette_masks and args.palette_size < len(MANY_CLASSES):
        raise SystemExit(f'--palette-size {args.palette_size}: the painted maps include 49-class scenes, so the '
                         f'palette needs at least {len(MANY_CLASSES)} colours')
    palette = palette_colours(args.palette_size) if args.palette_masks else None

    if args.init:
        if not osp.isfile(osp.join(args.init, 'vae', 'config.json')):
            raise FileNotFoundError(f'--init {args.init}: no {args.init}/vae/config.json; give the model folder '
                                    'that holds vae/ (e.g. checkpoints/tiny_sd)')
        vae = AutoencoderKL.from_pretrained(args.init, subfolder='vae').float()
    else:
        vae = AutoencoderKL(**dict(VAE_CONFIG, latent_channels=args.latent_channels,
                                   block_out_channels=tuple(args.widths), layers_per_block=args.layers_per_block,
                                   norm_num_groups=args.norm_groups))
        # Start with a small posterior std (logvar ~ -8): the sampled latents are then close to the
        # mode from the first step, instead of drowning the young encoder in unit-variance noise.
        with torch.no_grad():
            vae.quant_conv.bias[args.latent_channels:] -= 8.0
    vae.train()
    opt = torch.optim.Adam(vae.parameters(), lr=args.lr)
    warmup = max(1, args.iters // 20)
    # Linear warm-up, then cosine decay to 5% of the peak.
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda it: min(1.0, (it + 1) / warmup) *
        (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(it, args.iters) / args.iters))))

    n_params = sum(p.numel() for p in vae.parameters())
    painted_maps = (f' + {args.palette_masks} painted label maps ({args.palette_size} colours)'
                    if args.palette_masks else '')
    print(f'tiny VAE{" from " + args.init if args.init else ""}: {n_params / 1e6:.3f} M parameters, '
          f'widths {tuple(vae.config.block_out_channels)}, '
          f'{vae.config.latent_channels} latent channels; {args.iters} iterations, '
          f'batch {args.batch_size} images ({args.mix}) '
          f'+ {n_mask} masks{painted_maps}, '
          f'{args.threads} threads, {"bf16 autocast" if args.bf16 else "fp32"}', flush=True)
    t0 = time.time()
    for it in range(1, args.iters + 1):
        imgs, masks = sample_batch(rng, args.batch_size, n_mask, mix=args.mix)
        painted = sample_palette_masks(rng, args.palette_masks, palette) if args.palette_masks else masks[:0]
        x = torch.cat([imgs, masks, painted])
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=args.bf16):
            post = vae.encode(x).latent_dist
            # Decode a posterior sample (standard VAE training: the decoder learns to tolerate
            # latent noise, which the denoiser's imperfect latents will need); the tiny KL keeps
            # the latent scale in check without costing reconstruction quality.
            rec = vae.decode(post.sample()).sample.float()
        n = len(imgs)
        loss_img = F.l1_loss(rec[:n], imgs)
        loss_img_mse = F.mse_loss(rec[:n], imgs)
        loss_mask = F.l1_loss(rec[n:n + len(masks)], masks)
        loss_palette = F.l1_loss(rec[n + len(masks):], painted) if args.palette_masks else rec.new_zeros(())
        loss_kl = post.kl().float().mean()
        loss = (args.image_weight * loss_img + args.image_mse_weight * loss_img_mse +
                args.mask_weight * loss_mask + args.palette_weight * loss_palette + args.kl_weight * loss_kl)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if it % args.log_every == 0 or it == args.iters:
            print(f'[{it:5d}/{args.iters}] loss {loss.item():.4f} img {loss_img.item():.4f} '
                  f'(mse {loss_img_mse.item():.4f}) mask {loss_mask.item():.4f} '
                  f'{f"palette {loss_palette.item():.4f} " if args.palette_masks else ""}kl {loss_kl.item():.1f} '
                  f'lr {sched.get_last_lr()[0]:.2e} {time.time() - t0:.0f}s', flush=True)
        if args.eval_every and it % args.eval_every == 0 and it < args.iters:
            m = evaluate(vae, args.seed, num_fg=50, num_img=30)
            extra = f', palette mIoU (6 of 150) {palette_miou(vae, args.seed, 150, num_img=20):.2f}' \
                if args.palette_masks else ''
            many = f', 49-class {heldout_psnr(vae, args.seed, "many", 30):.2f} dB' if args.mix == 'broad' else ''
            print(f'    eval: image PSNR {m["img_psnr"]:.2f} dB{many}, mask IoU {m["fg_iou_mean"]:.4f}{extra}',
                  flush=True)
    fit_time = time.time() - t0

    vae.eval()
    scale = 1.0 / latent_stats(vae, args.seed)['std']
    vae.register_to_config(scaling_factor=scale)
    if args.save_dtype == 'fp16':
        vae = vae.half()
    out_dir = osp.join(args.out, 'vae')
    os.makedirs(out_dir, exist_ok=True)
    vae.save_pretrained(out_dir, safe_serialization=True)
    size = osp.getsize(osp.join(out_dir, 'diffusion_pytorch_model.safetensors'))
    print(f'fit time: {fit_time:.0f} s ({fit_time / 60:.1f} min)')
    # evaluate what was saved, as it loads
    vae = AutoencoderKL.from_pretrained(args.out, subfolder='vae').eval()
    report(vae, args.seed)
    save_requested_figure(args, args.out, vae)
    print(f'saved {out_dir} ({size / 1e6:.2f} MB safetensors)')


if __name__ == '__main__':
    main()
