"""The frozen Stable Diffusion VAE: images and binary masks in, latents out, and mask latents back to scores."""
import torch
from diffusers import AutoencoderKL
from mmengine.model import BaseModule
from torch import Tensor

from mmseg.registry import MODELS
from ..utils import load_diffusers_part


@MODELS.register_module()
class LatentVAE(BaseModule):
    """Frozen ``diffusers.AutoencoderKL`` loaded like Stable Diffusion's (``subfolder='vae'``).

    Latents are the posterior mean times the VAE scaling factor (deterministic, as in Marigold).
    Masks are encoded as 3-channel images in [-1, 1]; a decoded mask is the mean of the 3 channels.

    Args:
        pretrained (str): hub id or local Stable Diffusion directory in diffusers layout.
        subfolder (str): where the VAE lies inside ``pretrained``.
        slicing (bool): decode a batch one latent at a time (diffusers' VAE slicing): the decoder's
            full-resolution activations then hold one mask instead of a class chunk, for a little speed.
        gradient_checkpointing (bool): the single-step objective backpropagates through the decoder;
            recompute its blocks in the backward pass instead of keeping their full-resolution activations
            (``tools/analysis_tools/digseg_memory.py --objective single_step``). Encoding runs without autograd
            and is unaffected.
    """

    def __init__(self, pretrained: str, subfolder: str = 'vae', slicing: bool = False,
                 gradient_checkpointing: bool = False, init_cfg=None):
        super().__init__(init_cfg)
        self.vae = load_diffusers_part(AutoencoderKL, pretrained, subfolder, 'model.backbone.pretrained')
        if slicing:
            self.vae.enable_slicing()
        if gradient_checkpointing:
            self.vae.enable_gradient_checkpointing()
        self.vae.requires_grad_(False)
        self.vae.eval()
        self.scaling_factor = float(self.vae.config.scaling_factor)
        # each down block but the last halves the resolution
        self.downsample_factor = 2**(len(self.vae.config.block_out_channels) - 1)
        self.latent_channels = int(self.vae.config.latent_channels)

    def init_weights(self):
        pass  # pretrained; mmengine must not re-initialise it

    def train(self, mode: bool = True):
        super().train(mode)
        self.vae.eval()  # frozen: no dropout, no statistics updates
        return self

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, C, H/f, W/f) scaled latents."""
        dtype = self.vae.dtype
        return self.vae.encode(images.to(dtype)).latent_dist.mode() * self.scaling_factor

    def encode_masks(self, masks: Tensor) -> Tensor:
        """(N, H, W) binary masks -> (N, C, H/f, W/f) scaled latents."""
        x = masks.float()[:, None].expand(-1, 3, -1, -1) * 2 - 1
        return self.encode(x)

    def decode_masks(self, latents: Tensor) -> Tensor:
        """(N, C, h, w) scaled latents -> (N, H, W) mask values, about -1 (absent) to 1 (present).

        Runs with autograd when the caller has it on (the single-step objective backpropagates through
        the frozen decoder); the VAE's own parameters never get gradients.
        """
        return self.decode(latents).mean(dim=1)

    def decode(self, latents: Tensor) -> Tensor:
        """(N, C, h, w) scaled latents -> (N, 3, H, W) images in about [-1, 1], float32 (with autograd when on)."""
        return self.vae.decode(latents.to(self.vae.dtype) / self.scaling_factor).sample.float()
