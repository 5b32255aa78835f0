from .open_clip_text import TEMPLATES, OpenCLIPTextEncoder

__all__ = ['OpenCLIPTextEncoder', 'TEMPLATES']
