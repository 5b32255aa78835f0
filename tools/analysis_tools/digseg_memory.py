"""Memory per GPU for training DiGSeg at 512 px (SD 2.1-base + open_clip text tower), without a GPU.

    python tools/analysis_tools/digseg_memory.py ViT-L-14      # or ViT-B-16; CPU, a minute or two
    python tools/analysis_tools/digseg_memory.py ViT-L-14 --objective single_step   # the loss on decoded masks

Parameters are counted on the real architectures (SD 2.1-base's published U-Net and VAE configs, open_clip
ViT-L-14 / ViT-B-16) built on the meta device. One training step (VAE encodes under no_grad, U-Net forward
and backward under bf16 autocast with GroupNorm/LayerNorm in fp32 as on CUDA, AdamW step) runs on fake
CPU tensors (shapes and dtypes only); a TorchDispatchMode follows every tensor storage from creation to
release and reports the peak of live bytes on top of the weights. The second step is measured (AdamW
states live). CPU_AUTOCAST_NORMS=1 keeps the norms in bf16 (CPU autocast rules) for comparison.
``--objective single_step`` measures that objective's step instead: one U-Net pass, then the frozen VAE
decoder with autograd (its weights get no gradients, its activations are kept for the backward pass to the
U-Net), with and without the decoder's own gradient checkpointing.
"""
import argparse
import os
import sys
import weakref

import open_clip
import torch
from diffusers import AutoencoderKL
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from mmseg_digseg.models.decode_heads.diffusion_mask_head import DiffusionMaskHead

SD21_UNET = dict(
    act_fn='silu', attention_head_dim=[5, 10, 20, 20], block_out_channels=[320, 640, 1280, 1280],
    cross_attention_dim=1024, down_block_types=['CrossAttnDownBlock2D'] * 3 + ['DownBlock2D'],
    up_block_types=['UpBlock2D'] + ['CrossAttnUpBlock2D'] * 3, flip_sin_to_cos=True, freq_shift=0,
    in_channels=4, out_channels=4, layers_per_block=2, norm_num_groups=32, sample_size=64,
    use_linear_projection=True, downsample_padding=1, mid_block_scale_factor=1, norm_eps=1e-5)
SD21_VAE = dict(
    act_fn='silu', block_out_channels=[128, 256, 512, 512], down_block_types=['DownEncoderBlock2D'] * 4,
    up_block_types=['UpDecoderBlock2D'] * 4, in_channels=3, out_channels=3, latent_channels=4,
    layers_per_block=2, norm_num_groups=32, sample_size=512)
SCHED = dict(num_train_timesteps=1000, beta_schedule='scaled_linear', beta_start=0.00085, beta_end=0.012,
             prediction_type='v_prediction', rescale_betas_zero_snr=True, timestep_spacing='trailing',
             clip_sample=False)
GiB = 2**30


def fp32_norm(forward):
    """CUDA autocast runs group_norm / layer_norm in fp32 (CPU autocast keeps them in bf16): emulate it,
    so that the saved norm and SiLU activations have the size they have on a GPU."""
    def wrapped(self, x):
        with torch.autocast('cpu', enabled=False):
            return forward(self, x.float())
    return wrapped


if os.environ.get('CPU_AUTOCAST_NORMS') != '1':
    torch.nn.GroupNorm.forward = fp32_norm(torch.nn.GroupNorm.forward)
    torch.nn.LayerNorm.forward = fp32_norm(torch.nn.LayerNorm.forward)


def count(m, trainable=None):
    return sum(p.numel() for p in m.parameters() if trainable is None or p.requires_grad == trainable)


def to_fake(module):
    """Meta parameters -> fake CPU tensors of the same shape (built on meta: no memory, no init time)."""
    for mod in module.modules():
        for name, p in mod._parameters.items():
            if p is not None:
                mod._parameters[name] = torch.nn.Parameter(torch.empty(p.shape, dtype=p.dtype),
                                                           requires_grad=p.requires_grad)
        for name, b in mod._buffers.items():
            if b is not None and b.device.type == 'meta':
                mod._buffers[name] = torch.empty(b.shape, dtype=b.dtype)
    return module


def build(clip, ckpt):
    with torch.device('meta'):
        vae = AutoencoderKL(**SD21_VAE).requires_grad_(False)
    width = clip.transformer.width
    with torch.device('meta'):
        head = DiffusionMaskHead(unet_cfg=SD21_UNET, scheduler_cfg=SCHED, text_token_dim=width,
                                 text_embed_dim=clip.text_projection.shape[1], gradient_checkpointing=ckpt)
    return vae, clip, head, width


class LiveBytes(TorchDispatchMode):
    """Every tensor storage created inside the mode, live from its creation to its death: the peak is
    what a caching-free allocator would need on top of what existed before (the weights)."""

    def __init__(self, existing=()):
        super().__init__()
        self.existing = {t.untyped_storage()._cdata for t in existing}  # weights (updated in place)
        self.refs, self.size, self.current, self.peak = {}, {}, 0, 0
        self.phase, self.phase_peak = None, {}

    def _release(self, key):
        self.refs[key] -= 1
        if self.refs[key] == 0:
            self.current -= self.size.pop(key)
            del self.refs[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                key = t.untyped_storage()._cdata
                if key in self.existing:
                    continue
                if key not in self.size:
                    self.size[key], self.refs[key] = t.untyped_storage().nbytes(), 0
                    self.current += self.size[key]
                    self.peak = max(self.peak, self.current)
                    self.phase_peak[self.phase] = max(self.phase_peak.get(self.phase, 0), self.current)
                self.refs[key] += 1
                weakref.finalize(t, self._release, key)
        return out


def step(mode, vae, head, width, images, pairs, embed_dim, objective='denoising'):
    mode.phase = 'vae_encode'
    # frozen VAE, no autograd: image latents, then mask latents (DiGSeg encodes them apart); DiGSeg.loss
    # runs inside the optimizer wrapper's autocast, so the VAE encodes in bf16 too
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        vae.encode(torch.empty(images, 3, 512, 512)).latent_dist.mode()
        masks = vae.encode(torch.empty(pairs, 3, 512, 512)).latent_dist.mode()
    img_lat = torch.empty(pairs, 4, 64, 64)
    tokens = torch.empty(pairs, 77, width)  # cached CLIP features (the tower does not run)
    pooled = torch.empty(pairs, embed_dim)
    mode.phase = 'unet_forward'
    with torch.autocast('cpu', dtype=torch.bfloat16):
        if objective == 'denoising':
            loss = head.loss_denoising(img_lat, masks, tokens, pooled)['loss_denoise']
        else:  # single_step: the masks decoded at 512 px, as LatentVAE.decode_masks does, with autograd
            clean = head.single_step(img_lat, tokens, pooled)
            mode.phase = 'vae_decode'
            loss = vae.decode(clean / 0.18215).sample.float().mean(dim=1).mean()
    mode.phase = 'unet_backward'
    loss.backward()


def measure(clip_name, images, pairs_per_image, ckpt, steps=2, objective='denoising', decoder_ckpt=False):
    # fake CPU tensors: shapes and dtypes only, and (unlike meta tensors) CPU autocast applies to them
    clip = open_clip.create_model(clip_name, pretrained=None, device='meta')  # weights only: it never runs
    clip.visual = None  # (class features are cached)
    clip.requires_grad_(False)
    vae, clip, head, width = build(clip, ckpt)
    if decoder_ckpt:
        vae.enable_gradient_checkpointing()  # diffusers: the encoder and decoder blocks recompute in backward
    with FakeTensorMode(allow_non_fake_inputs=True):
        return _measure(to_fake(vae), clip, to_fake(head), width, images, pairs_per_image, steps, objective)


def _measure(vae, clip, head, width, images, pairs_per_image, steps, objective='denoising'):
    embed_dim = clip.text_projection.shape[1]
    params = [p for p in head.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=3e-5, foreach=False)
    weights = sum(p.numel() * p.element_size() for m in (vae, clip, head) for p in m.parameters())
    mode = LiveBytes([p for m in (vae, head) for p in list(m.parameters()) + list(m.buffers())])
    with mode:
        for _ in range(steps):  # the second step starts with the optimizer states live
            step(mode, vae, head, width, images, images * pairs_per_image, embed_dim, objective)
            mode.phase = 'optimizer'
            opt.step()
            mode.after_step = mode.current / GiB  # grads + AdamW states
            opt.zero_grad(set_to_none=True)
    return dict(params=dict(vae=count(vae), clip_text=count(clip), unet_head=count(head, True)),
                weights_gib=weights / GiB, peak_over_weights_gib=mode.peak / GiB,
                grads_and_states_gib=mode.after_step,
                phase_peak_gib={k: v / GiB for k, v in mode.phase_peak.items()})


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('clip_name', nargs='?', default='ViT-L-14')
    parser.add_argument('--objective', default='denoising', choices=['denoising', 'single_step'])
    args = parser.parse_args()
    clip_name = args.clip_name
    decoder = args.objective == 'single_step'
    print('| text tower | images/GPU | grad. ckpt | ' + ('decoder ckpt | ' if decoder else '')
          + 'weights GiB | peak over weights GiB | tensor peak GiB |')
    for images in (1, 2):
        for ckpt in (False, True):
            for decoder_ckpt in ((False, True) if decoder else (False, )):
                # 4 (image, class) pairs per image: 3 present + 1 absent
                r = measure(clip_name, images, 4, ckpt, objective=args.objective, decoder_ckpt=decoder_ckpt)
                print(f"| {clip_name} | {images} | {'on' if ckpt else 'off'} | "
                      + (f"{'on' if decoder_ckpt else 'off'} | " if decoder else '')
                      + f"{r['weights_gib']:.2f} | {r['peak_over_weights_gib']:.2f} | "
                      f"{r['weights_gib'] + r['peak_over_weights_gib']:.1f} |", r['params'], flush=True)
