"""Let torch >= 2.6 (``torch.load(weights_only=True)`` by default) read mmengine checkpoints.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``, and its checkpoints hold a few
non-tensor objects (message hub history, config dicts, numpy scalars). They are allow-listed here
rather than turning the safe loader off.
"""
import numpy as np
import torch
from mmengine.config import ConfigDict
from mmengine.logging import HistoryBuffer


def allow_mmengine_checkpoints():
    safe = [HistoryBuffer, ConfigDict, np.dtype, np.ndarray, np.core.multiarray.scalar,
            np.core.multiarray._reconstruct, type(np.dtype(np.float64)), type(np.dtype(np.float32)),
            type(np.dtype(np.int64)), type(np.dtype(np.int32))]
    torch.serialization.add_safe_globals(safe)
