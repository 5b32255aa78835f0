"""Frozen open_clip text tower: class names -> prompt embeddings, cached per vocabulary."""
import hashlib
import os
import os.path as osp
from typing import Dict, Optional, Sequence, Tuple, Union

import open_clip
import torch
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor

from mmseg.registry import MODELS
from ..utils import looks_like_local_path, resolve_path

# Small model configs shipped with the package (the embedded default's text tower).
open_clip.add_model_config(osp.join(osp.dirname(__file__), 'open_clip_configs'))

TEMPLATES = {
    'single': ('a photo of a {} in the scene', ),
    # ViLD's 14 templates (as used by SAN and CAT-Seg)
    'vild': (
        'a photo of a {}.', 'This is a photo of a {}', 'There is a {} in the scene',
        'There is the {} in the scene', 'a photo of a {} in the scene', 'a photo of a small {}.',
        'a photo of a medium {}.', 'a photo of a large {}.', 'This is a photo of a small {}.',
        'This is a photo of a medium {}.', 'This is a photo of a large {}.',
        'There is a small {} in the scene.', 'There is a medium {} in the scene.',
        'There is a large {} in the scene.'),
    # CLIP's 80 ImageNet templates, as open_clip ships them (functions of the class name)
    'imagenet80': tuple(template('{}') for template in OPENAI_IMAGENET_TEMPLATES),
}


@MODELS.register_module()
class OpenCLIPTextEncoder(BaseModule):
    """CLIP text features for class prompts, from an open_clip model.

    For each class it returns
    - ``pooled``: the L2-normalised CLIP text embedding averaged over templates and synonyms
      (``'person, people'`` is two synonyms), re-normalised: the CLIP-aligned class vector;
    - ``tokens``: the per-token features of the last text layer for the first template, the sequence
      the U-Net's cross-attention reads.
    Results are cached per vocabulary, so a training or test run encodes its class names once.

    Args:
        model_name (str): open_clip model name, e.g. ``'ViT-L-14'``, ``'ViT-B-16'``, or the shipped
            ``'DiGSeg-Tiny-CLIP'``.
        pretrained (str, optional): open_clip pretrained tag (``'openai'``), a local checkpoint file, or
            None for a randomly initialised tower (seeded, so every build gives the same weights).
        templates (str | sequence[str]): a name in ``TEMPLATES`` (``'single'``, ``'vild'`` (14),
            ``'imagenet80'``) or templates with one ``{}``.
        cache_dir (str, optional): also keep the embeddings on disk, keyed by text model, weights,
            templates and vocabulary, so that later runs do not run the text tower for it again.
    """

    def __init__(self,
                 model_name: str = 'ViT-L-14',
                 pretrained: Optional[str] = 'openai',
                 templates: Union[str, Sequence[str]] = 'single',
                 seed: int = 0,
                 cache_dir: Optional[str] = None,
                 init_cfg=None):
        super().__init__(init_cfg)
        self.cache_dir = cache_dir
        self._model_key = (model_name, str(pretrained), seed)
        if isinstance(templates, str) and templates not in TEMPLATES:
            raise ValueError(f'Unknown template set {templates!r}; choose one of {list(TEMPLATES)} or give '
                             'a list of templates with one "{}" each.')
        self.templates = tuple(TEMPLATES[templates] if isinstance(templates, str) else templates)
        if not self.templates or any('{}' not in t for t in self.templates):
            raise ValueError(f'Every prompt template needs one "{{}}" for the class name; got {self.templates}.')
        self.clip = self._create(model_name, pretrained, seed)
        self.clip.visual = None  # only the text tower is used; drop the image tower's weights
        self.clip.requires_grad_(False)
        self.clip.eval()
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self._cache: Dict[Tuple[str, ...], Tuple[Tensor, Tensor]] = {}
        self.num_encoded = 0  # class names sent through the tower (cache misses)
        pooled, tokens = self._encode_names(['object'])
        self.embed_dim, self.token_dim = pooled.shape[-1], tokens.shape[-1]

    @staticmethod
    def _create(model_name, pretrained, seed):
        if model_name not in open_clip.list_models():
            raise ValueError(f'Unknown open_clip model "{model_name}". Known names include ViT-L-14, ViT-B-16 '
                             f'and DiGSeg-Tiny-CLIP (see open_clip.list_models()).')
        if pretrained is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return open_clip.create_model(model_name, pretrained=None)
        path = resolve_path(osp.expanduser(pretrained))
        if looks_like_local_path(path) and not osp.isfile(path):
            raise FileNotFoundError(
                f'open_clip checkpoint "{pretrained}" does not exist. Set model.text_encoder.pretrained to a '
                f'checkpoint file, to an open_clip tag such as "openai", or to None for random weights.')
        try:
            return open_clip.create_model(model_name, pretrained=path if osp.isfile(path) else pretrained)
        except Exception as err:  # hub and checkpoint errors come in many types
            raise FileNotFoundError(
                f'Cannot load open_clip "{model_name}" with pretrained="{pretrained}" '
                f'({type(err).__name__}: {err}). Without network access, download the checkpoint elsewhere '
                f'(e.g. open_clip_pytorch_model.bin) and set model.text_encoder.pretrained to its path.') from err

    def init_weights(self):
        pass  # pretrained (or seeded); mmengine must not re-initialise it

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()
        return self

    @property
    def device(self):
        return next(self.clip.parameters()).device

    @torch.no_grad()
    def _encode_names(self, class_names: Sequence[str]) -> Tuple[Tensor, Tensor]:
        pooled, tokens = [], []
        for name in class_names:
            synonyms = [s.strip() for s in name.split(',') if s.strip()]
            prompts = [t.format(s) for s in synonyms for t in self.templates]
            out = self.clip.forward_intermediates(
                text=self.tokenizer(prompts).to(self.device),
                text_indices=1,
                normalize=True,
                normalize_intermediates=True)
            pooled.append(F.normalize(out['text_features'].float().mean(0), dim=-1))
            tokens.append(out['text_intermediates'][-1][0].float())
        self.num_encoded += len(class_names)
        return torch.stack(pooled), torch.stack(tokens)

    def _disk_path(self, names: Tuple[str, ...]) -> str:
        digest = hashlib.sha1(repr((self._model_key, self.templates, names)).encode()).hexdigest()[:16]
        return osp.join(self.cache_dir, f'text_embeddings_{digest}.pt')

    def _encode_cached_on_disk(self, names: Tuple[str, ...]) -> Tuple[Tensor, Tensor]:
        if self.cache_dir is None:
            return self._encode_names(names)
        path = self._disk_path(names)
        if osp.isfile(path):
            saved = torch.load(path, map_location=self.device)
            return saved['pooled'], saved['tokens']
        pooled, tokens = self._encode_names(names)
        os.makedirs(self.cache_dir, exist_ok=True)
        torch.save(dict(pooled=pooled.cpu(), tokens=tokens.cpu(), names=list(names),
                        templates=list(self.templates), model=list(self._model_key)), path)
        return pooled, tokens

    def forward(self, class_names: Sequence[str]) -> Tuple[Tensor, Tensor]:
        """Class names -> (pooled (C, D), tokens (C, L, D_tok)); cached per vocabulary."""
        key = tuple(class_names)
        if not key:
            raise ValueError('The vocabulary is empty: give at least one class name or prompt.')
        if key not in self._cache:
            self._cache[key] = self._encode_cached_on_disk(key)
        pooled, tokens = self._cache[key]
        if pooled.device != self.device:  # the model moved (e.g. to the GPU) after caching
            pooled, tokens = pooled.to(self.device), tokens.to(self.device)
            self._cache[key] = pooled, tokens
        return pooled, tokens
