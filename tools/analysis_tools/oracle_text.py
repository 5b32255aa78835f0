"""An analysis stand-in for the text tower: word features that tell every word apart, as a trained CLIP would.

``OracleWordText`` gives each word of a class name its own random unit vector (seeded by the word), so
"dotted disc" and "dotted square" share their texture word's feature and differ fully in their shape
word's; the pooled feature is the normalised mean of the words' vectors (cosine 0.5 for classes sharing
one of two words, about 0 for classes sharing none), and the tokens are the words' vectors in order, padded
with a fixed vector. It answers one question (docs/paper_recipe.md): does DiGSeg-tiny learn the 49 classes
when its prompts are as separable as a real CLIP's, i.e. is the seeded random tiny tower (same-texture
classes at cosine 0.948) what stops it? It is not a text encoder for use: it knows no language::

    python tools/train.py tools/analysis_tools/configs/digseg_tiny_synth-shapes-many-64_oracle-text.py
"""
import zlib
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from torch import Tensor


@MODELS.register_module()
class OracleWordText(BaseModule):
    """Class names -> (pooled (C, D), tokens (C, L, D)) from per-word random unit vectors (see the module)."""

    def __init__(self, dim: int = 64, context_length: int = 16, **unused):  # unused: the tower's keys
        super().__init__()
        self.embed_dim = self.token_dim = dim
        self.context_length = context_length
        self.register_buffer('anchor', torch.zeros(1), persistent=False)  # follows the model's device

    def word(self, word: str) -> Tensor:
        generator = torch.Generator().manual_seed(zlib.crc32(word.encode()))
        return F.normalize(torch.randn(self.embed_dim, generator=generator), dim=0)

    def forward(self, class_names: Sequence[str]) -> Tuple[Tensor, Tensor]:
        if not class_names:
            raise ValueError('The vocabulary is empty.')
        pad = self.word('<pad>')
        pooled, tokens = [], []
        for name in class_names:
            words = torch.stack([self.word(w) for w in name.split()])
            pooled.append(F.normalize(words.mean(0), dim=0))
            rows = [pad] + list(words) + [pad] * (self.context_length - 1 - len(words))
            tokens.append(torch.stack(rows[:self.context_length]))
        device = self.anchor.device
        return torch.stack(pooled).to(device), torch.stack(tokens).to(device)
