from .checkpoint import allow_mmengine_checkpoints
from .distributed import finish_distributed, setup_cpu_distributed
from .hooks import BinaryThresholdHook, CheckFiniteLossHook, DiGSegVocabularyHook

__all__ = ['BinaryThresholdHook', 'CheckFiniteLossHook', 'DiGSegVocabularyHook', 'allow_mmengine_checkpoints',
           'finish_distributed', 'setup_cpu_distributed']
