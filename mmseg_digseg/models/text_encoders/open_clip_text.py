"""Frozen open_clip text tower: class names -> prompt embeddings, cached per vocabulary."""
import hashlib
import json
import os
import os.path as osp
from typing import Dict, Optional, Sequence, Tuple, Union

import open_clip
import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from open_clip.hf_model import HFTextEncoder
from open_clip.transformer import QuickGELU
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
from torch import Tensor

from mmseg.registry import MODELS
from ..utils import looks_like_local_path, resolve_path

# Small model configs shipped with the package (the embedded default's text tower).
open_clip.add_model_config(osp.join(osp.dirname(__file__), 'open_clip_configs'))

HF_HUB_PREFIX, LOCAL_DIR_PREFIX = 'hf-hub:', 'local-dir:'
BIOMEDCLIP = 'hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224'
# Short names for Hub models, usable as ``model_name``.
MODEL_ALIASES = {'BiomedCLIP': BIOMEDCLIP}
# The Hugging Face model whose architecture config (and tokenizer) a Hub model's HF text tower is built from;
# its weights come with the CLIP checkpoint. Named in the download instructions when that config is missing.
HF_TEXT_REPOS = {BIOMEDCLIP: 'microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract'}

TEMPLATES = {
    # the prompt of the DiGSeg paper's pipeline figure ("A photo of a [class]"); the tokenizers lowercase
    'paper': ('A photo of a {}.', ),
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


def _hub_download_hint(hub_name: str, hf_text_repo: Optional[str]) -> str:
    repo = hub_name[len(HF_HUB_PREFIX):]
    hint = (f'Without network access, download it on a machine that has it:\n'
            f'    hf download {repo} --local-dir DIR\n')
    if hf_text_repo and not osp.isdir(hf_text_repo):
        hint += (f'and its text tower\'s architecture config and tokenizer into the Hugging Face cache (the text '
                 f'weights are in the CLIP checkpoint):\n'
                 f'    hf download {hf_text_repo} --include "*.json" --include "*.txt"\n')
    return hint + ('then set model.text_encoder.pretrained=DIR (and HF_HUB_OFFLINE=1 on a machine without '
                   'network).')


@MODELS.register_module()
class OpenCLIPTextEncoder(BaseModule):
    """CLIP text features for class prompts, from an open_clip model.

    For each class it returns
    - ``pooled``: the L2-normalised CLIP text embedding averaged over templates and synonyms
      (``'person, people'`` is two synonyms), re-normalised: the CLIP-aligned class vector;
    - ``tokens``: the per-token features of the last text layer for the first template, the sequence
      the U-Net's cross-attention reads (for a Hugging Face text tower such as BiomedCLIP's PubMedBERT:
      its last hidden state).
    Features are computed in fp32 with autocast disabled, whatever precision the rest of the model runs
    in, so training (AMP) and bf16/fp16 testing see the same features. Results are cached per vocabulary,
    so a training or test run encodes its class names once.

    Args:
        model_name (str): open_clip model name, e.g. ``'ViT-L-14'``, ``'ViT-B-16'``, the shipped
            ``'DiGSeg-Tiny-CLIP'``, a Hub model (``'hf-hub:ORG/REPO'``, or ``'BiomedCLIP'`` for
            ``hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``), or
            ``'local-dir:DIR'`` (a directory with ``open_clip_config.json`` and the checkpoint).
        pretrained (str, optional): for a built-in model name: an open_clip pretrained tag (``'openai'``),
            a local checkpoint file, or None for a randomly initialised tower (seeded, so every build gives
            the same weights). For a Hub model: None for the Hub repository itself (from the Hugging Face
            cache, or downloaded), or the directory of a local copy (``hf download ORG/REPO --local-dir
            DIR``).
        templates (str | sequence[str]): a name in ``TEMPLATES`` (``'paper'`` ("A photo of a {}."),
            ``'single'``, ``'vild'`` (14), ``'imagenet80'``) or templates with one ``{}``.
        quick_gelu (bool, optional): build the tower with QuickGELU (True) or GELU (False). None: what the
            weights need as far as open_clip knows it: QuickGELU for tags trained with it (``'openai'``) and
            for the ``-quickgelu`` model names, else the model config's activation. A local checkpoint file
            carries no such information: OpenAI's ViT-L/14 and ViT-B/16 weights need ``quick_gelu=True``
            (set in the paper configs). Has no effect on Hugging Face text towers.
        cache_dir (str, optional): also keep the embeddings on disk, keyed by text model, weights,
            activation, templates and vocabulary, so that later runs do not run the text tower for it again.
    """

    def __init__(self,
                 model_name: str = 'ViT-L-14',
                 pretrained: Optional[str] = 'openai',
                 templates: Union[str, Sequence[str]] = 'single',
                 seed: int = 0,
                 cache_dir: Optional[str] = None,
                 quick_gelu: Optional[bool] = None,
                 init_cfg=None):
        super().__init__(init_cfg)
        self.cache_dir = cache_dir
        if isinstance(templates, str) and templates not in TEMPLATES:
            raise ValueError(f'Unknown template set {templates!r}; choose one of {list(TEMPLATES)} or give '
                             'a list of templates with one "{}" each.')
        self.templates = tuple(TEMPLATES[templates] if isinstance(templates, str) else templates)
        if not self.templates or any('{}' not in t for t in self.templates):
            raise ValueError(f'Every prompt template needs one "{{}}" for the class name; got {self.templates}.')
        model_name = MODEL_ALIASES.get(model_name, model_name)
        self.clip, self.tokenizer = self._create(model_name, pretrained, seed, quick_gelu)
        self.clip.visual = None  # only the text tower is used; drop the image tower's weights
        self.clip.requires_grad_(False)
        self.clip.eval()
        self.hf_text = isinstance(getattr(self.clip, 'text', None), HFTextEncoder)
        # the activation the tower was built with (not the requested one), part of the disk-cache key
        self.quick_gelu = any(isinstance(m, QuickGELU) for m in self.clip.modules())
        self._model_key = (model_name, str(pretrained), seed, f'quick_gelu={self.quick_gelu}')
        self._cache: Dict[Tuple[str, ...], Tuple[Tensor, Tensor]] = {}
        self.num_encoded = 0  # class names sent through the tower (cache misses)
        pooled, tokens = self._encode_names(['object'])
        self.embed_dim, self.token_dim = pooled.shape[-1], tokens.shape[-1]

    @staticmethod
    def _activation_kwargs(model_name, pretrained, quick_gelu):
        """open_clip.create_model kwargs building the activation the weights need."""
        if quick_gelu is None and pretrained and open_clip.get_pretrained_cfg(model_name, pretrained).get(
                'quick_gelu', False):
            quick_gelu = True  # e.g. 'openai': open_clip 3.x would build GELU and only warn
        if quick_gelu is None:
            return {}
        # force_quick_gelu also silences open_clip's tag check; quick_gelu=False overrides a -quickgelu config
        return dict(force_quick_gelu=True) if quick_gelu else dict(quick_gelu=False)

    @classmethod
    def _create(cls, model_name, pretrained, seed, quick_gelu):
        act_kwargs = cls._activation_kwargs(model_name, pretrained, quick_gelu)
        if model_name.startswith((HF_HUB_PREFIX, LOCAL_DIR_PREFIX)):
            return cls._create_from_hub(model_name, pretrained, act_kwargs)
        if model_name not in open_clip.list_models():
            raise ValueError(f'Unknown open_clip model "{model_name}". Known names include ViT-L-14, ViT-B-16 '
                             f'and DiGSeg-Tiny-CLIP (see open_clip.list_models()), Hub models '
                             f'("hf-hub:ORG/REPO", {list(MODEL_ALIASES)}) and "local-dir:DIR".')
        tokenizer = open_clip.get_tokenizer(model_name)
        if pretrained is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return open_clip.create_model(model_name, pretrained=None, **act_kwargs), tokenizer
        path = resolve_path(osp.expanduser(pretrained))
        if looks_like_local_path(path) and not osp.isfile(path):
            raise FileNotFoundError(
                f'open_clip checkpoint "{pretrained}" does not exist. Set model.text_encoder.pretrained to a '
                f'checkpoint file, to an open_clip tag such as "openai", or to None for random weights.')
        try:
            model = open_clip.create_model(model_name, pretrained=path if osp.isfile(path) else pretrained,
                                           **act_kwargs)
        except Exception as err:  # hub and checkpoint errors come in many types
            raise FileNotFoundError(
                f'Cannot load open_clip "{model_name}" with pretrained="{pretrained}" '
                f'({type(err).__name__}: {err}). Without network access, download the checkpoint elsewhere '
                f'(e.g. open_clip_pytorch_model.bin) and set model.text_encoder.pretrained to its path.') from err
        return model, tokenizer

    @staticmethod
    def _create_from_hub(model_name, pretrained, act_kwargs):
        """A Hub model (``hf-hub:ORG/REPO``) from the Hugging Face cache or a local copy, or ``local-dir:DIR``.

        Both go through open_clip's own loading of ``open_clip_config.json`` and the checkpoint beside it;
        a Hugging Face text tower (BiomedCLIP's PubMedBERT) also needs the ``transformers`` package and its
        model's architecture config (``hf_model_name``).
        """
        hub_name = model_name if model_name.startswith(HF_HUB_PREFIX) else None
        if pretrained is not None:
            if hub_name is None:
                raise ValueError(f'"{model_name}" names its weights; set model.text_encoder.pretrained=None.')
            local = resolve_path(osp.expanduser(pretrained))
            if not osp.isfile(osp.join(local, 'open_clip_config.json')):
                raise FileNotFoundError(
                    f'model.text_encoder.pretrained="{pretrained}" is not a local copy of {hub_name} (no '
                    f'open_clip_config.json in it); set it to None to load the Hub repository, or to a '
                    f'directory made by `hf download`. ' + _hub_download_hint(hub_name, HF_TEXT_REPOS.get(hub_name)))
            model_name = LOCAL_DIR_PREFIX + local
        hf_text_repo = HF_TEXT_REPOS.get(hub_name)
        if model_name.startswith(LOCAL_DIR_PREFIX):
            config_path = osp.join(model_name[len(LOCAL_DIR_PREFIX):], 'open_clip_config.json')
            if not osp.isfile(config_path):
                raise FileNotFoundError(f'{config_path} does not exist: "{model_name}" must be a directory '
                                        f'with open_clip_config.json and the checkpoint (open_clip\'s Hub layout).')
            with open(config_path, encoding='utf-8') as f:
                hf_text_repo = json.load(f).get('model_cfg', {}).get('text_cfg', {}).get('hf_model_name',
                                                                                          hf_text_repo)
        try:
            # require_pretrained: open_clip only warns (and keeps random weights) when a Hub checkpoint is missing
            model = open_clip.create_model(model_name, require_pretrained=True, **act_kwargs)
            tokenizer = open_clip.get_tokenizer(model_name)
        except Exception as err:  # hub, transformers and checkpoint errors come in many types
            if hub_name is None:
                raise FileNotFoundError(f'Cannot load open_clip "{model_name}" ({type(err).__name__}: {err}).') \
                    from err
            raise FileNotFoundError(
                f'Cannot load open_clip "{model_name}" ({type(err).__name__}: {err}). '
                + _hub_download_hint(hub_name, hf_text_repo)) from err
        return model, tokenizer

    def init_weights(self):
        pass  # pretrained (or seeded); mmengine must not re-initialise it

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()
        return self

    @property
    def device(self):
        return next(self.clip.parameters()).device

    def _run_tower(self, text: Tensor) -> Tuple[Tensor, Tensor]:
        """Token ids -> (normalised text embeddings (N, D), last-layer token features (N, L, D_tok))."""
        if self.hf_text:  # HFTextEncoder has no forward_intermediates: its forward, keeping the hidden states
            tower = self.clip.text
            attention_mask = (text != tower.config.pad_token_id).long()
            out = tower.transformer(input_ids=text, attention_mask=attention_mask)
            pooled = tower.proj(tower.pooler(out, attention_mask))
            return F.normalize(pooled, dim=-1), out.last_hidden_state
        out = self.clip.forward_intermediates(
            text=text, text_indices=1, normalize=True, normalize_intermediates=True)
        return out['text_features'], out['text_intermediates'][-1]

    @torch.no_grad()
    def _encode_names(self, class_names: Sequence[str]) -> Tuple[Tensor, Tensor]:
        pooled, tokens = [], []
        for name in class_names:
            synonyms = [s.strip() for s in name.split(',') if s.strip()]
            features, token_features = self.encode_texts([t.format(s) for s in synonyms for t in self.templates])
            pooled.append(F.normalize(features.mean(0), dim=-1))
            tokens.append(token_features[0])
        self.num_encoded += len(class_names)
        return torch.stack(pooled), torch.stack(tokens)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> Tuple[Tensor, Tensor]:
        """Free text, as written: no templates, no cache -> (pooled (N, D), tokens (N, L, D_tok)), fp32. Text
        longer than the tower's context is cut, as CLIP cuts it. Class names go through it with their templates;
        text-to-image pretraining (tools/pretrain_tiny_unet.py) sends captions, every one new."""
        if any(p.dtype != torch.float32 for p in self.clip.parameters()):
            self.clip.float()  # the model was cast to half precision: the text features stay fp32
        # fp32 whatever autocast the caller runs under (AMP training, bf16/fp16 testing)
        with torch.autocast(device_type=self.device.type, enabled=False):
            pooled, tokens = self._run_tower(self.tokenizer(list(texts)).to(self.device))
        return pooled.float(), tokens.float()

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
        """Class names -> (pooled (C, D), tokens (C, L, D_tok)), fp32; cached per vocabulary."""
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
