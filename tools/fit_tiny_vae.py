"""Fit the tiny VAE of the test/demo model stack and save it in the Stable Diffusion layout.

The result loads exactly like the VAE of Stable Diffusion::

    AutoencoderKL.from_pretrained('checkpoints/tiny_sd', subfolder='vae')

It is trained on SynthShapes, rendered on the fly: RGB images and binary class masks (both in
[-1, 1], masks replicated to 3 channels), because DiGSeg VAE-encodes both the image and the mask
that it denoises. What matters is that a binary mask survives the round trip
encode -> posterior mode -> decode -> mean over channels -> ``> 0`` (IoU well above 0.9); the
image only needs to keep its shapes and textures in the latent. (With this budget the image
reconstructions stay blurry and lose most of their colour, ~15 dB PSNR; colour carries no class
information in SynthShapes.)

Usage::

    python tools/fit_tiny_vae.py [--out checkpoints/tiny_sd] [--iters 1000] [--seed 0]
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

from mmseg_digseg.datasets.synth_shapes import CLASSES, render_sample  # noqa: E402

# 3 blocks -> downsampling factor 4 (64x64 -> 4x16x16). Width 32 throughout keeps the fp32
# safetensors at ~1.2 MB; (32, 64, 64) would be ~3.8 MB. 8 groups (4 channels each), not 32:
# one-channel groups normalise away every per-channel level, and masks then train much slower.
VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=('DownEncoderBlock2D', ) * 3,
    up_block_types=('UpDecoderBlock2D', ) * 3,
    block_out_channels=(32, 32, 32),
    layers_per_block=1,
    latent_channels=4,
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


def sample_batch(rng, n, size=64):
    """``n`` images and, for each, the mask of one class (present or not, background included)."""
    imgs, masks = [], []
    for _ in range(n):
        img, label = render_sample(rng, size)
        present = np.unique(label)
        # Mostly classes that are present (the masks that matter), sometimes any class, so that
        # empty masks (absent class) are seen too.
        if rng.random() < 0.8:
            cls = int(rng.choice(present))
        else:
            cls = int(rng.integers(0, len(CLASSES)))
        imgs.append(to_tensor_image(img))
        masks.append(to_tensor_mask(label == cls))
    return torch.stack(imgs), torch.stack(masks)


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


@torch.no_grad()
def roundtrip(vae, x, batch=50):
    out = []
    for i in range(0, len(x), batch):
        z = vae.encode(x[i:i + batch]).latent_dist.mode()
        out.append(vae.decode(z).sample)
    return torch.cat(out)


@torch.no_grad()
def evaluate(vae, seed, num_fg=200):
    """Mask round-trip IoU (foreground masks; all present masks) and image PSNR, held out."""
    vae.eval()
    fg, bg, imgs = heldout_masks(seed, num_fg)
    fg_t = torch.stack([to_tensor_mask(m) for m in fg])
    bg_t = torch.stack([to_tensor_mask(m) for m in bg])
    fg_iou = iou(decode_mask(roundtrip(vae, fg_t)).numpy(), fg)
    bg_iou = iou(decode_mask(roundtrip(vae, bg_t)).numpy(), bg)
    img_t = torch.stack([to_tensor_image(im) for im in imgs[:100]])
    rec = ((roundtrip(vae, img_t).clamp(-1, 1) + 1) * 127.5).round()
    mse = ((rec - (img_t + 1) * 127.5)**2).mean(dim=(1, 2, 3))
    psnr = (10 * torch.log10(255.0**2 / mse.clamp_min(1e-8))).mean().item()
    vae.train()
    return dict(
        fg_iou_mean=float(fg_iou.mean()),
        fg_iou_min=float(fg_iou.min()),
        all_iou_mean=float(np.concatenate([fg_iou, bg_iou]).mean()),
        num_fg=len(fg_iou),
        num_all=len(fg_iou) + len(bg_iou),
        img_psnr=psnr)


@torch.no_grad()
def latent_std(vae, seed, n=128):
    """Std of posterior means over held-out masks and images (for ``scaling_factor``)."""
    vae.eval()
    imgs, masks = sample_batch(np.random.default_rng([seed, _STATS_STREAM]), n)
    z = torch.cat([vae.encode(imgs).latent_dist.mean, vae.encode(masks).latent_dist.mean])
    return z.std().item()


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', default='checkpoints/tiny_sd', help='model folder; the VAE goes to OUT/vae')
    p.add_argument('--iters', type=int, default=1000)
    p.add_argument('--batch-size', type=int, default=8, help='images per step (plus as many masks)')
    p.add_argument('--lr', type=float, default=2e-3)
    p.add_argument('--kl-weight', type=float, default=1e-6)
    p.add_argument('--image-weight', type=float, default=1.0)
    p.add_argument('--mask-weight', type=float, default=2.0)
    p.add_argument('--latent-channels', type=int, default=VAE_CONFIG['latent_channels'])
    p.add_argument('--widths', type=int, nargs=3, default=VAE_CONFIG['block_out_channels'])
    p.add_argument('--norm-groups', type=int, default=VAE_CONFIG['norm_num_groups'])
    p.add_argument('--seed', type=int, default=0)
    # One thread: on a shared 2-core machine, two OpenMP threads slow down several-fold as soon
    # as anything else runs; one thread is also the reproducible setting.
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--log-every', type=int, default=50)
    return p.parse_args()


def main():
    args = parse_args()
    from diffusers import AutoencoderKL

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng([args.seed, _TRAIN_STREAM])

    vae = AutoencoderKL(**dict(VAE_CONFIG, latent_channels=args.latent_channels,
                               block_out_channels=tuple(args.widths), norm_num_groups=args.norm_groups))
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
    print(f'tiny VAE: {n_params / 1e6:.3f} M parameters, {args.iters} iterations, '
          f'batch {args.batch_size} images + {args.batch_size} masks, {args.threads} threads')
    t0 = time.time()
    for it in range(1, args.iters + 1):
        imgs, masks = sample_batch(rng, args.batch_size)
        x = torch.cat([imgs, masks])
        post = vae.encode(x).latent_dist
        # Decode a posterior sample (standard VAE training: the decoder learns to tolerate latent
        # noise, which the denoiser's imperfect latents will need); the tiny KL keeps the latent
        # scale in check without costing reconstruction quality.
        rec = vae.decode(post.sample()).sample
        n = len(imgs)
        loss_img = F.l1_loss(rec[:n], imgs)
        loss_mask = F.l1_loss(rec[n:], masks)
        loss_kl = post.kl().mean()
        loss = args.image_weight * loss_img + args.mask_weight * loss_mask + args.kl_weight * loss_kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if it % args.log_every == 0 or it == args.iters:
            print(f'[{it:5d}/{args.iters}] loss {loss.item():.4f} img {loss_img.item():.4f} '
                  f'mask {loss_mask.item():.4f} kl {loss_kl.item():.1f} '
                  f'lr {sched.get_last_lr()[0]:.2e} {time.time() - t0:.0f}s', flush=True)
    fit_time = time.time() - t0

    vae.eval()
    scale = 1.0 / latent_std(vae, args.seed)
    vae.register_to_config(scaling_factor=scale)
    metrics = evaluate(vae, args.seed)
    out_dir = osp.join(args.out, 'vae')
    os.makedirs(out_dir, exist_ok=True)
    vae.save_pretrained(out_dir, safe_serialization=True)
    size = osp.getsize(osp.join(out_dir, 'diffusion_pytorch_model.safetensors'))

    print(f'fit time: {fit_time:.0f} s ({fit_time / 60:.1f} min)')
    print(f'mask round-trip IoU, {metrics["num_fg"]} held-out foreground masks: '
          f'mean {metrics["fg_iou_mean"]:.4f}, min {metrics["fg_iou_min"]:.4f}')
    print(f'mask round-trip IoU, all {metrics["num_all"]} present masks (incl. background): '
          f'mean {metrics["all_iou_mean"]:.4f}')
    print(f'image PSNR (held out): {metrics["img_psnr"]:.2f} dB')
    print(f'scaling_factor: {scale:.5f}')
    print(f'saved {out_dir} ({size / 1e6:.2f} MB safetensors)')


if __name__ == '__main__':
    main()
