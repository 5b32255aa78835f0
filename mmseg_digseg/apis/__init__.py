from .inference import init_digseg, segment

__all__ = ['init_digseg', 'segment']
