"""Let mmengine read its own checkpoints under torch >= 2.6.

torch 2.6 made ``torch.load(weights_only=True)`` the default. mmengine 0.10.7 (its latest release) calls
``torch.load`` without the argument, and its checkpoints hold message-hub history and numpy objects that
the safe unpickler refuses (numpy 2 pickles dtypes through ``getattr``, which cannot be allow-listed
safely). A checkpoint is a file the user names, as it was before torch 2.6: local ones are read with
``weights_only=False`` again. Remote schemes (http, s3) keep mmengine's own loaders.
"""
import os.path as osp

import torch
from mmengine.runner import CheckpointLoader


def _load_local_checkpoint(filename, map_location=None):
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'Checkpoint {filename} does not exist.')
    return torch.load(filename, map_location=map_location, weights_only=False)


def allow_mmengine_checkpoints():
    CheckpointLoader.register_scheme(prefixes='', loader=_load_local_checkpoint, force=True)
