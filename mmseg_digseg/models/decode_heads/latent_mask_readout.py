"""A cheap mask readout: a mask latent to a per-pixel mask logit without the VAE decoder."""
import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmseg.registry import MODELS


@MODELS.register_module()
class LatentMaskReadout(BaseModule):
    """Mask latent (N, C, h, w) -> mask logits (N, h*f, w*f), replacing the full VAE decode at test time.

    A binary mask needs far less than the VAE decoder, which rebuilds a 3-channel image at full
    resolution: here a few 3x3 convolutions at latent resolution and a sub-pixel upsampling (each latent
    pixel predicts its f x f block of logits, ``PixelShuffle``). It trains beside the U-Net on
    (mask latent, mask) pairs, the frozen encoder's latents of ground-truth masks and the U-Net's own
    predictions (detached: the U-Net never learns from it), so that it reads what inference produces.
    Selected with ``test_cfg.mask_readout='learned'``; the full decode stays the default.

    Args:
        latent_channels, upsample_factor (int): set by the segmentor from the VAE.
        hidden_channels (int): width of the convolutions.
        num_layers (int): 3x3 convolutions before the upsampling layer.
    """

    def __init__(self, latent_channels: int = 4, upsample_factor: int = 8, hidden_channels: int = 64,
                 num_layers: int = 2, init_cfg=None):
        super().__init__(init_cfg)
        layers, width = [], latent_channels
        for _ in range(num_layers):
            layers += [nn.Conv2d(width, hidden_channels, 3, padding=1), nn.GELU()]
            width = hidden_channels
        layers += [nn.Conv2d(width, upsample_factor**2, 3, padding=1), nn.PixelShuffle(upsample_factor)]
        self.layers = nn.Sequential(*layers)
        self.upsample_factor = upsample_factor

    def forward(self, latents: Tensor) -> Tensor:
        return self.layers(latents.to(self.layers[0].weight.dtype))[:, 0]

    def loss(self, latents: Tensor, masks: Tensor, valid: Tensor) -> Tensor:
        """Binary cross-entropy on the valid pixels of ``masks`` (N, H, W) from ``latents`` (N, C, h, w)."""
        bce = F.binary_cross_entropy_with_logits(self(latents.detach()).float(), masks.float(), reduction='none')
        valid = valid.float()
        return (bce * valid).sum() / valid.sum().clamp(min=1)

    @torch.no_grad()
    def scores(self, latents: Tensor) -> Tensor:
        """Mask scores in [0, 1], as the VAE readout gives them."""
        return self(latents).float().sigmoid()
