from .diffusion_mask_head import DiffusionMaskHead, add_text_class_embedding, widen_conv_in
from .latent_mask_readout import LatentMaskReadout

__all__ = ['DiffusionMaskHead', 'LatentMaskReadout', 'widen_conv_in', 'add_text_class_embedding']
