from .checkpoint import allow_mmengine_checkpoints
from .distributed import setup_cpu_distributed
from .hooks import CheckFiniteLossHook, DiGSegVocabularyHook

__all__ = ['CheckFiniteLossHook', 'DiGSegVocabularyHook', 'allow_mmengine_checkpoints', 'setup_cpu_distributed']
