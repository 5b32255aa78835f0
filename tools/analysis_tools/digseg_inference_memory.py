"""Peak GPU memory of DiGSeg inference at the open-vocabulary test size (SD 2.1-base), without a GPU.

    python tools/analysis_tools/digseg_inference_memory.py [--vocab-sizes 150 847] [--image-size 640 853]

The real ``DiGSeg.predict`` runs, both ways (full (C, H, W) logits as MMSeg post-processes them, and
``return_logits=False``: labels by a running argmax over class chunks), with SD 2.1-base's VAE and U-Net
(``conv_in`` widened) on fake tensors (shapes and dtypes only, fp32 as the test configs run). The text
tower is replaced by its cached output for the vocabulary (ViT-L/14 sizes: pooled 768, 77 tokens x 768),
as a test run reads it from the cache after the first image. ``LiveBytes`` (digseg_memory.py) follows every
tensor storage and reports the peak of live bytes on top of the weights: what a caching-free allocator
needs. Fused attention is assumed (one op, as PyTorch's SDPA kernels on GPU); the DDIM update is replaced by
elementwise ops of the same sizes (its coefficients depend on timestep values, which fake tensors lack).
"""
import argparse
import os.path as osp
import sys

import torch
from diffusers import AutoencoderKL, DDIMScheduler
from diffusers.schedulers.scheduling_ddim import DDIMSchedulerOutput
from mmengine.config import Config
from torch._subclasses.fake_tensor import FakeTensorMode

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from digseg_memory import SCHED, SD21_UNET, SD21_VAE, GiB, LiveBytes, to_fake  # noqa: E402

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOKEN_WIDTH, EMBED_DIM, CONTEXT = 768, 768, 77  # open_clip ViT-L/14 text tower


def ddim_step_shapes_only(self, model_output, timestep, sample, **kwargs):
    """DDIM's update as far as memory goes (predicted x0 and epsilon, then x_{t-1}, all latent-sized):
    the real one reads its coefficients at the timestep's value, which fake tensors do not have."""
    pred_original_sample = sample - model_output
    pred_epsilon = sample + model_output
    return DDIMSchedulerOutput(prev_sample=pred_original_sample + pred_epsilon,
                               pred_original_sample=pred_original_sample)


DDIMScheduler.step = ddim_step_shapes_only


class CachedTextFeatures(torch.nn.Module):
    """What ``OpenCLIPTextEncoder`` returns from its cache: (pooled (C, 768), tokens (C, 77, 768))."""

    def forward(self, class_names):
        return torch.empty(len(class_names), EMBED_DIM), torch.empty(len(class_names), CONTEXT, TOKEN_WIDTH)


def build_sd21_digseg(test_cfg: dict, slicing: bool):
    """DiGSeg's own code with SD 2.1-base's parts on the meta device (``to_fake`` makes them fake tensors)."""
    import mmseg_digseg  # noqa: F401
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    from mmseg_digseg.models.decode_heads import DiffusionMaskHead
    register_all_modules()
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs/digseg/digseg_tiny_synth-shapes-64.py'))
    cfg.model.test_cfg.update(test_cfg, init_noise='zeros')  # (fake tensors take no generator; same memory)
    model = MODELS.build(cfg.model)
    with torch.device('meta'):
        model.backbone.vae = AutoencoderKL(**SD21_VAE).requires_grad_(False)
        model.decode_head = DiffusionMaskHead(unet_cfg=SD21_UNET, scheduler_cfg=SCHED, text_token_dim=TOKEN_WIDTH,
                                              text_embed_dim=EMBED_DIM)
    if slicing:
        model.backbone.vae.enable_slicing()
    model.backbone.downsample_factor, model.backbone.scaling_factor = 8, 0.18215
    model.text_encoder = CachedTextFeatures()
    return model.eval()


def measure(vocab_size, image_size, test_cfg, slicing):
    from mmseg.structures import SegDataSample
    H, W = image_size
    # a path seeds the start noise (image_seeds): fake tensors have no pixels to hash
    meta = dict(ori_shape=(H, W), img_shape=(H, W), pad_shape=(H, W), padding_size=[0, 0, 0, 0], img_path='fake.png')
    model = build_sd21_digseg(test_cfg, slicing)
    with FakeTensorMode(allow_non_fake_inputs=True):
        to_fake(model)
        model.class_names = [f'class {i}' for i in range(vocab_size)]
        weights = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
        mode = LiveBytes(list(model.parameters()) + list(model.buffers()))
        with mode, torch.no_grad():
            model.predict(torch.empty(1, 3, H, W), [SegDataSample(metainfo=meta)])
    return weights / GiB, mode.peak / GiB


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--vocab-sizes', type=int, nargs='+', default=[150, 847])
    p.add_argument('--image-size', type=int, nargs=2, default=[640, 853], metavar=('H', 'W'))
    p.add_argument('--class-chunk-size', type=int, default=16)
    args = p.parse_args()
    print(f'DiGSeg SD 2.1-base inference, {args.image_size[0]}x{args.image_size[1]} image, 1x1, '
          f'chunks of {args.class_chunk_size} classes, fp32')
    print('| classes | prediction | VAE slicing | weights GiB | peak over weights GiB | tensor peak GiB |')
    print('|---|---|---|---|---|---|')
    for n in args.vocab_sizes:
        for return_logits, slicing in ((True, False), (False, False), (True, True), (False, True)):
            test_cfg = dict(return_logits=return_logits, class_chunk_size=args.class_chunk_size)
            weights, peak = measure(n, args.image_size, test_cfg, slicing)
            print(f"| {n} | {'full logits' if return_logits else 'labels only'} | {'on' if slicing else 'off'} | "
                  f'{weights:.2f} | {peak:.3f} | {weights + peak:.1f} |', flush=True)


if __name__ == '__main__':
    main()
