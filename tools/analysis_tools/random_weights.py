"""Paper-scale DiGSeg configs with random weights: Stable Diffusion 2.1-base's architecture, no download.

``with_random_weights(cfg, folder)`` rewrites a config so that it builds without any pretrained file:

- the U-Net (``decode_head.pretrained``) is built from SD 2.1-base's published ``unet/config.json`` with
  the published scheduler file under the config's own overrides (``decode_head.unet_cfg`` /
  ``scheduler_cfg``, nothing written to disk);
- the VAE (``backbone.pretrained``, loaded by path only) is written once into ``folder/vae`` with random
  weights (0.33 GB) from SD 2.1-base's ``vae/config.json``;
- the text tower gets ``pretrained=None``: open_clip's architecture for ``model_name``, seeded random weights.

The published config files are kept in ``tests/fixtures/sd21_base`` (their README says where they come
from). FLOPs, memory and speed do not depend on the weights' values; results do.
"""
import json
import os.path as osp

from mmengine.config import Config

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SD21_FILES = osp.join(REPO_ROOT, 'tests/fixtures/sd21_base')


def _published(part: str, name: str = 'config.json') -> dict:
    with open(osp.join(SD21_FILES, part, name)) as f:
        return json.load(f)


def sd21_unet_cfg() -> dict:
    """SD 2.1-base's U-Net config as ``UNet2DConditionModel(**cfg)`` takes it (diffusers' private keys dropped)."""
    return {k: v for k, v in _published('unet').items() if not k.startswith('_')}


def sd21_scheduler_cfg(overrides: dict) -> dict:
    """SD 2.1-base's scheduler settings as ``DiffusionMaskHead`` reads them from a directory, overrides on top."""
    from diffusers import DDPMScheduler
    from mmseg_digseg.models.decode_heads.diffusion_mask_head import scheduler_keys, scheduler_settings
    published = scheduler_settings(DDPMScheduler.from_config(_published('scheduler', 'scheduler_config.json')).config)
    # the DDPM / DDIM settings only (the published file is a PNDMScheduler's: skip_prk_steps, ...)
    return {**{k: v for k, v in published.items() if k in scheduler_keys()}, **dict(overrides or {})}


def write_sd21_vae(folder: str, seed: int = 0) -> str:
    """An SD 2.1-base VAE with random weights in diffusers layout (``folder/vae``); returns ``folder``."""
    import torch
    from diffusers import AutoencoderKL
    if not osp.isfile(osp.join(folder, 'vae', 'config.json')):
        torch.manual_seed(seed)
        AutoencoderKL.from_config(_published('vae')).save_pretrained(osp.join(folder, 'vae'))
    return folder


def with_random_weights(cfg: Config, folder: str) -> Config:
    """``cfg`` with the Stable Diffusion parts of ``cfg.model`` (a config whose ``decode_head`` has
    ``pretrained``) replaced by SD 2.1-base's architecture and the text tower by open_clip's, all with random
    weights (see the module docstring). The tiny configs keep their shipped VAE and config-built U-Net."""
    model = cfg.model
    head = model.decode_head
    if head.get('pretrained'):  # a Stable Diffusion config: its U-Net and VAE come from one directory
        head.pop('pretrained')
        head.unet_cfg = sd21_unet_cfg()
        head.scheduler_cfg = sd21_scheduler_cfg(head.get('scheduler_cfg'))
        model.backbone.pretrained = write_sd21_vae(folder)
    model.text_encoder.pretrained = None
    return cfg
