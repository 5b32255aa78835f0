from .diffusion_mask_head import DiffusionMaskHead, add_text_class_embedding, widen_conv_in

__all__ = ['DiffusionMaskHead', 'widen_conv_in', 'add_text_class_embedding']
