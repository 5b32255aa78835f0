"""Pretrain the tiny U-Net as a text-to-image latent diffusion model and save it in the Stable Diffusion layout.

The paper fine-tunes Stable Diffusion, a U-Net pretrained to generate images from captions. This tool gives the
embedded model the same start: the U-Net of ``configs/_base_/models/digseg_tiny.py`` (built from that config,
16 latent channels in and out, as SD's U-Net takes 4) learns to denoise the tiny VAE's *image* latents under
the cross-attention of caption tokens from the tiny text tower the segmenter uses. No labels are used: scenes
are rendered on the fly (never the same twice), half of them 6-class, half 49-class SynthShapes, and each
caption is the scene generator's (``render_scene``), e.g. 'a dotted disc and a checkered square'. Captions
drop the generator's ' on a smooth background' so that more objects fit the tower's 16 tokens (longer ones
are cut, as CLIP cuts at 77). One caption in ten is replaced by the empty one, for classifier-free guidance.

The result loads like Stable Diffusion's U-Net and scheduler, next to the VAE::

    UNet2DConditionModel.from_pretrained('checkpoints/tiny_sd', subfolder='unet')
    DDPMScheduler.from_pretrained('checkpoints/tiny_sd', subfolder='scheduler')

and a DiGSeg config starts from it as the paper configs start from SD 2.1-base
(``model.decode_head.pretrained='checkpoints/tiny_sd'``, ``unet_cfg=None``): ``conv_in`` is widened 16 -> 32 for
[image latent, noisy mask latent] and the pooled-text class embedding is added, zero-initialised.

The committed ``checkpoints/tiny_sd/unet`` is the defaults' fit (2500 iterations of 32 scenes, peak lr 1e-3,
bf16 autocast; 1417 s on the 2-core CI machine kind, 6.0 MB fp32) and the figure docs/images/tiny_unet_samples.png
is drawn from it::

    python tools/pretrain_tiny_unet.py --out checkpoints/tiny_sd --figure docs/images/tiny_unet_samples.png
    python tools/pretrain_tiny_unet.py --samples-only checkpoints/tiny_sd --figure docs/images/tiny_unet_samples.png

The held-out loss (v-prediction MSE at fixed t and noise on fixed scenes) is printed every ``--eval-every``
iterations, beside that of the untrained U-Net: 1.14 / 1.10 / 1.04 -> 0.21 / 0.16 / 0.65 at t = 100 / 500 / 900
for the committed fit. Fine-tuning DiGSeg from it did not beat training from scratch (docs/paper_recipe.md,
"A generatively pretrained tiny U-Net").
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

from mmseg_digseg.datasets.synth_shapes import render_scene  # noqa: E402

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
MODEL_CONFIG = osp.join(REPO_ROOT, 'configs', '_base_', 'models', 'digseg_tiny.py')
BACKGROUND_SUFFIX = ' on a smooth background'
# Disjoint random streams for training scenes, held-out scenes and the figure.
_TRAIN_STREAM, _EVAL_STREAM, _FIGURE_STREAM = 400, 500, 600
EVAL_TIMESTEPS = (100, 500, 900)


def pretraining_caption(caption: str) -> str:
    """The generator's caption without the background it names in every scene."""
    return caption[:-len(BACKGROUND_SUFFIX)] if caption.endswith(BACKGROUND_SUFFIX) else caption


def sample_scenes(rng, n, size=64, variants=('basic', 'many')):
    """``n`` freshly rendered scenes: images (n, 3, size, size) in [-1, 1] and their captions."""
    imgs, captions = [], []
    for _ in range(n):
        img, _, caption = render_scene(rng, size, variants[int(rng.integers(len(variants)))])
        imgs.append(torch.from_numpy(img).permute(2, 0, 1).float() / 127.5 - 1.0)
        captions.append(pretraining_caption(caption))
    return torch.stack(imgs), captions


def build_parts(vae_dir):
    """The tiny config's frozen VAE (``LatentVAE``, read from ``vae_dir``) and text tower, as the segmenter builds
    them, and the settings its U-Net and scheduler are built from."""
    from mmengine import Config

    import mmseg_digseg  # noqa: F401  (registers DiGSeg's modules)
    from mmseg.registry import MODELS

    cfg = Config.fromfile(MODEL_CONFIG).model
    vae = MODELS.build(dict(cfg.backbone, pretrained=vae_dir))
    text_encoder = MODELS.build(cfg.text_encoder).eval()
    unet_cfg = dict(cfg.decode_head.unet_cfg)
    if text_encoder.token_dim != unet_cfg['cross_attention_dim']:
        raise ValueError(f'The text tower\'s tokens have {text_encoder.token_dim} channels but the U-Net\'s '
                         f'cross-attention takes {unet_cfg["cross_attention_dim"]}; DiGSeg passes tokens through '
                         'unchanged only when they match.')
    return vae, text_encoder, unet_cfg, dict(cfg.decode_head.scheduler_cfg)


def v_loss(unet, scheduler, latents, tokens, timesteps, noise):
    noisy = scheduler.add_noise(latents, noise, timesteps)
    target = scheduler.get_velocity(latents, noise, timesteps)
    pred = unet(noisy, timesteps, encoder_hidden_states=tokens).sample
    return F.mse_loss(pred.float(), target.float())


class HeldOut:
    """Fixed scenes, noise and timesteps: the v-prediction MSE at each of ``EVAL_TIMESTEPS``."""

    def __init__(self, vae, text_encoder, seed, n=64):
        imgs, captions = sample_scenes(np.random.default_rng([seed, _EVAL_STREAM]), n)
        self.latents = vae.encode(imgs)
        self.tokens = text_encoder.encode_texts(captions)[1]
        self.noise = torch.randn(self.latents.shape, generator=torch.Generator().manual_seed(seed))

    @torch.no_grad()
    def __call__(self, unet, scheduler, bf16):
        out = {}
        for t in EVAL_TIMESTEPS:
            ts = torch.full((len(self.latents), ), t, dtype=torch.long)
            with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
                out[t] = v_loss(unet, scheduler, self.latents, self.tokens, ts, self.noise).item()
        return out


@torch.no_grad()
def generate(unet, scheduler_cfg, vae, text_encoder, captions, seed=0, steps=25, guidance=3.0):
    """Images (N, 3, H, W) in [-1, 1] for ``captions``: trailing DDIM with classifier-free guidance."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(scheduler_cfg, set_alpha_to_one=True)
    scheduler.set_timesteps(steps)
    tokens = text_encoder.encode_texts(list(captions) + [''] * len(captions))[1]
    size = unet.config.sample_size
    latents = torch.randn((len(captions), unet.config.out_channels, size, size),
                          generator=torch.Generator().manual_seed(seed))
    for t in scheduler.timesteps:
        pred = unet(torch.cat([latents, latents]), t.expand(2 * len(captions)), encoder_hidden_states=tokens).sample
        cond, uncond = pred.chunk(2)
        latents = scheduler.step(uncond + guidance * (cond - uncond), t, latents).prev_sample
    return vae.decode(latents).clamp(-1, 1)


def save_figure(path, unet, scheduler_cfg, vae, text_encoder, num_scenes=6, per_caption=4, seed=0):
    """Rows: a held-out scene's caption, its real image, then ``per_caption`` images generated from the caption."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng([seed, _FIGURE_STREAM])
    variants = ['basic', 'many'] * (num_scenes // 2) + ['many'] * (num_scenes % 2)
    scenes = [render_scene(rng, 64, v) for v in variants]
    captions = [pretraining_caption(c) for _, _, c in scenes]
    generated = generate(unet, scheduler_cfg, vae, text_encoder, [c for c in captions for _ in range(per_caption)],
                         seed=seed)
    tiles = ((generated + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    tile, text_h, gap = 128, 28, 6
    width = (per_caption + 1) * (tile + gap) + gap
    canvas = Image.new('RGB', (width, num_scenes * (tile + text_h + gap) + gap), 'white')
    draw = ImageDraw.Draw(canvas)
    for row, (img, _, _) in enumerate(scenes):
        y = gap + row * (tile + text_h + gap)
        draw.text((gap, y + 2), f'"{captions[row]}"  (real | generated x {per_caption})', fill='black')
        images = [img] + [tiles[row * per_caption + k] for k in range(per_caption)]
        for col, im in enumerate(images):
            x = gap + col * (tile + gap)
            canvas.paste(Image.fromarray(im).resize((tile, tile), Image.NEAREST), (x, y + text_h))
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    canvas.save(path)
    print(f'saved {path}: {num_scenes} captions x {per_caption} generated images (25 trailing DDIM steps, '
          'guidance 3)')


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--vae', default='checkpoints/tiny_sd', help='model folder holding the tiny VAE (vae/)')
    p.add_argument('--out', default='checkpoints/tiny_sd', help='model folder; the U-Net goes to OUT/unet, the '
                   'scheduler to OUT/scheduler')
    p.add_argument('--init', metavar='DIR', help='continue from the U-Net in DIR/unet instead of a fresh one')
    p.add_argument('--samples-only', metavar='DIR', help='only draw --figure with the U-Net in DIR/unet (no fit)')
    p.add_argument('--figure', help='write a figure of generated images here after the fit')
    p.add_argument('--iters', type=int, default=2500)
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--cfg-drop', type=float, default=0.1, help='share of captions replaced by the empty one')
    p.add_argument('--bf16', action=argparse.BooleanOptionalAction, default=True,
                   help='bfloat16 autocast (fast on CPUs with AMX / AVX512-BF16, ~95x slower on AVX2-only ones: '
                   'use --no-bf16 there); weights stay fp32')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--log-every', type=int, default=50)
    p.add_argument('--eval-every', type=int, default=500)
    return p.parse_args()


def main():
    args = parse_args()
    from diffusers import DDPMScheduler, UNet2DConditionModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    vae, text_encoder, unet_cfg, scheduler_cfg = build_parts(args.vae)
    if args.samples_only:
        unet = UNet2DConditionModel.from_pretrained(args.samples_only, subfolder='unet').eval()
        scheduler_cfg = dict(DDPMScheduler.from_pretrained(args.samples_only, subfolder='scheduler').config)
        save_figure(args.figure or 'tiny_unet_samples.png', unet, scheduler_cfg, vae, text_encoder, seed=args.seed)
        return

    scheduler = DDPMScheduler(**scheduler_cfg)
    unet = (UNet2DConditionModel.from_pretrained(args.init, subfolder='unet') if args.init
            else UNet2DConditionModel(**unet_cfg)).train()
    held_out = HeldOut(vae, text_encoder, args.seed)
    print(f'held-out v-MSE at t={EVAL_TIMESTEPS}, untrained: {held_out(unet, scheduler, args.bf16)}', flush=True)
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=1e-2)
    warmup = max(1, args.iters // 40)
    sched = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then cosine to 5 % of the peak
        opt, lambda it: min(1.0, (it + 1) / warmup) *
        (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(it, args.iters) / args.iters))))
    rng = np.random.default_rng([args.seed, _TRAIN_STREAM])
    print(f'tiny U-Net{" from " + args.init if args.init else ""}: '
          f'{sum(p.numel() for p in unet.parameters()) / 1e6:.3f} M parameters; {args.iters} iterations of '
          f'{args.batch_size} captioned scenes, lr {args.lr}, {args.threads} threads, '
          f'{"bf16 autocast" if args.bf16 else "fp32"}', flush=True)
    t0, running = time.time(), None
    for it in range(1, args.iters + 1):
        imgs, captions = sample_scenes(rng, args.batch_size)
        captions = ['' if rng.random() < args.cfg_drop else c for c in captions]
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=args.bf16):
            latents = vae.encode(imgs).float()
        tokens = text_encoder.encode_texts(captions)[1]
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents), ))
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=args.bf16):
            loss = v_loss(unet, scheduler, latents, tokens, timesteps, torch.randn_like(latents))
        if not torch.isfinite(loss):
            raise FloatingPointError(f'non-finite loss at iteration {it}; lower --lr (now {args.lr})')
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if it % args.log_every == 0 or it == args.iters:
            print(f'[{it:5d}/{args.iters}] loss {loss.item():.4f} (smoothed {running:.4f}) '
                  f'lr {sched.get_last_lr()[0]:.2e} {time.time() - t0:.0f}s', flush=True)
        if args.eval_every and it % args.eval_every == 0:
            unet.eval()
            print(f'    held-out v-MSE at t={EVAL_TIMESTEPS}: {held_out(unet, scheduler, args.bf16)}', flush=True)
            unet.train()
    print(f'fit time: {time.time() - t0:.0f} s')
    unet.eval()
    unet.save_pretrained(osp.join(args.out, 'unet'), safe_serialization=True)
    scheduler.save_pretrained(osp.join(args.out, 'scheduler'))
    size = osp.getsize(osp.join(args.out, 'unet', 'diffusion_pytorch_model.safetensors'))
    print(f'saved {args.out}/unet ({size / 1e6:.2f} MB safetensors) and {args.out}/scheduler')
    if args.figure:
        save_figure(args.figure, unet, scheduler_cfg, vae, text_encoder, seed=args.seed)


if __name__ == '__main__':
    main()
