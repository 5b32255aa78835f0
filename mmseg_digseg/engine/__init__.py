from .checkpoint import allow_mmengine_checkpoints
from .hooks import CheckFiniteLossHook, DiGSegVocabularyHook

__all__ = ['CheckFiniteLossHook', 'DiGSegVocabularyHook', 'allow_mmengine_checkpoints']
