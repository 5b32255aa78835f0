"""DiGSeg: a latent diffusion model as a text-conditioned, per-class mask generator."""
import os
import zlib
from contextlib import contextmanager
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.structures import PixelData
from torch import Tensor

from mmseg.models.segmentors import BaseSegmentor
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptConfigType, OptMultiConfig, OptSampleList, SampleList
from ...datasets.vocabularies import load_vocabulary
from ..decode_heads.diffusion_mask_head import cross_class_ce, decoded_probs, masked_mse

DEFAULT_TRAIN_CFG = dict(
    objective='denoising',  # or 'single_step' (end to end through the frozen VAE decoder)
    num_positive=2,  # present classes drawn per image and step; None: all of them
    num_negative=1,  # absent classes (all-negative masks) drawn per image and step; None: all of them
    # (both None: every class of the vocabulary for every image, as inference compares them)
    timestep_range=None,  # denoising only: (low, high) training timesteps; None: all. Few-step
    # sampling starts at t=T, so biasing training toward high noise spends the budget where it is used.
    timestep_range_share=1.0,  # the share of pairs drawn from timestep_range; the rest from all timesteps
    # (the later steps of multi-step sampling run at lower t: docs/paper_recipe.md, "Table 4's trend")
    # single_step: bce, dice, latent (MSE), ce (per-pixel cross-entropy across the classes drawn for an
    # image, on their logits: what the argmax asks); denoising (MSE) ignores all but ce, which it puts on
    # the VAE decode of the U-Net's clean estimate (docs/paper_recipe.md, recipe (d)).
    # readout: the learned mask readout's BCE (with model.mask_readout; it never reaches the U-Net). Small:
    # Adam's steps do not depend on a loss's scale, and a small one keeps the readout's gradients out of
    # the clipped gradient norm it shares with the U-Net (at weight 1 they slowed the U-Net down)
    loss_weights=dict(bce=1.0, dice=1.0, latent=0.0, ce=0.0, readout=0.01),
    ignore_index=255,  # pixels left out of every loss (ADE20K's "other", crop padding)
    # how the latent losses (denoising MSE, latent) treat a latent pixel over some ignored image pixels:
    # 'weight' by the fraction of valid pixels under it, or 'exclude' it (its target still encodes the
    # ignored pixels, as background). See LATENT_IGNORE_MODES.
    latent_ignore='weight')

DEFAULT_TEST_CFG = dict(
    mode='whole',  # or 'slide': windows of crop_size every stride (MMSeg's slide_inference), averaged
    crop_size=None,  # slide: (h, w) window in image pixels
    stride=None,  # slide: (h, w) step in image pixels
    precision=None,  # None/'fp32', or 'bf16' / 'fp16': U-Net and VAE under autocast (text stays fp32)
    mask_readout='vae',  # mask latent -> scores: 'vae' (full decode, the paper's) or 'learned'
    # (model.mask_readout: a few convolutions at latent resolution, no decoder)
    preset=None,  # a paper row of ensemble size x steps, e.g. '4x2' (see INFERENCE_PRESETS)
    num_steps=1,  # DDIM steps (trailing spacing starts at t=T)
    ensemble_size=1,  # members with different start noise, averaged in latent space
    timestep_spacing=None,  # None: the scheduler's ('trailing' in our configs)
    init_noise='gaussian',  # start latent: 'gaussian', or 'zeros' for single_step-trained models
    class_chunk_size=16,  # classes per U-Net batch (times ensemble_size)
    topk_classes=None,  # K: denoise only the K classes with the best cheap pre-score (large vocabularies)
    prescore_scale=0.5,  # latent scale of the one-step pre-score
    return_logits=True,  # False: label maps only, built chunk by chunk, so memory does not grow with
    # the vocabulary (ADE-847); TTA averages logits and needs True
    seed=0)  # start noise is seeded per image (``image_seeds``): reproducible, independent of order and batch

LOSS_NAMES = ('bce', 'dice', 'latent', 'ce', 'readout')
LATENT_IGNORE_MODES = ('weight', 'exclude')
MASK_READOUTS = ('vae', 'learned')
PRECISIONS = {None: None, 'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def cpu_computes_natively(dtype: torch.dtype) -> bool:
    """Whether this CPU has native ``dtype`` arithmetic (bf16: AMX or AVX512-BF16; fp16: AMX-FP16). Elsewhere
    autocast emulates it: a 3x3 convolution ran about 95x slower than in fp32 on an AVX2-only AMD EPYC. oneDNN,
    which runs the convolutions, may be held below the CPU's instructions (``ONEDNN_MAX_CPU_ISA=AVX2``): then it
    emulates too (2.0 s against 0.02 s for that convolution on an AVX512-BF16 CPU), so its limit counts."""
    isa = (os.environ.get('ONEDNN_MAX_CPU_ISA') or os.environ.get('DNNL_MAX_CPU_ISA') or 'ALL').upper()
    if dtype == torch.bfloat16:
        onednn_allows = isa == 'ALL' or any(part in isa for part in ('BF16', 'AMX', 'AVX10'))
        return onednn_allows and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return isa in ('ALL', 'AVX512_CORE_AMX_FP16', 'AVX10_1_512_AMX_FP16') and torch.cpu._is_amx_fp16_supported()


def merge_checked(name: str, defaults: dict, given: Optional[dict]) -> dict:
    """``{**defaults, **given}``, refusing keys that ``defaults`` does not have (a typo would be ignored)."""
    unknown = sorted(set(given or {}) - set(defaults))
    if unknown:
        raise ValueError(f'Unknown key(s) {unknown} in model.{name}; valid keys: {sorted(defaults)}.')
    return {**defaults, **(given or {})}


# The paper's E x Step ablation rows (ensemble size x denoising steps); '20x50' is "w/o trailing".
INFERENCE_PRESETS = {
    '1x1': dict(ensemble_size=1, num_steps=1),
    '1x2': dict(ensemble_size=1, num_steps=2),
    '4x2': dict(ensemble_size=4, num_steps=2),
    '8x2': dict(ensemble_size=8, num_steps=2),
    '20x50': dict(ensemble_size=20, num_steps=50, timestep_spacing='leading'),
}


# Logit of a class that top-K pruning skipped: below every computed logit (scores are clamped to
# [1e-4, 1 - 1e-4], so computed logits are >= -9.2), finite so that resizing and softmax stay defined.
PRUNED_LOGIT = -20.0


def scores_to_logits(scores: Tensor, eps: float = 1e-4) -> Tensor:
    """Per-class scores in [0, 1] -> logits whose sigmoid gives the scores back.

    Logits keep argmax (label = index of the best class in the vocabulary) and let MMSeg's
    SegTTAModel, which averages softmax over views, work unchanged.
    """
    scores = scores.clamp(eps, 1 - eps)
    return torch.log(scores) - torch.log1p(-scores)


def _shrink(x: Tensor, size: Sequence[int]) -> Tensor:
    """Antialiased bilinear resize, computed in fp32: PyTorch's CPU kernel has no bf16 version (under
    ``precision='bf16'`` the latents are bf16), and fp32 costs nothing at these sizes."""
    return F.interpolate(x.float(), size=list(size), mode='bilinear', antialias=True).to(x.dtype)


def pad_to_multiple(x: Tensor, multiple: int, value: float) -> Tensor:
    """Pad the last two dims on the bottom/right up to a multiple (the VAE needs it)."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), value=value)


def image_seeds(inputs: Tensor, batch_img_metas: Optional[List[dict]], base: int) -> List[int]:
    """One start-noise seed per image, from its file path (``img_path`` in its meta) or else its pixels, so
    that a prediction depends neither on the image's place in its batch nor on the batch size."""
    seeds = []
    for b in range(inputs.shape[0]):
        path = (batch_img_metas[b] if batch_img_metas else {}).get('img_path')
        key = str(path).encode() if path else inputs[b].detach().float().cpu().numpy().tobytes()
        seeds.append(base + zlib.crc32(key))  # crc32, unlike hash(), is the same in every process
    return seeds


FROZEN_PARTS = ('backbone', 'text_encoder')


def _drop_frozen_parts(module, state_dict, prefix, local_metadata):
    for key in [k for k in state_dict if k.startswith(tuple(f'{prefix}{part}.' for part in FROZEN_PARTS))]:
        del state_dict[key]


def _fill_frozen_parts(module, state_dict, prefix, *args):
    """A checkpoint without the frozen parts loads them as they are (torch's and mmengine's loaders alike:
    both run this hook before loading the children, so nothing is reported missing)."""
    for part in FROZEN_PARTS:
        for key, value in getattr(module, part).state_dict(prefix=f'{prefix}{part}.').items():
            state_dict.setdefault(key, value)


def _note_readout_weights(module, state_dict, prefix, *args):
    if module.mask_readout is not None:
        loaded = any(key.startswith(f'{prefix}mask_readout.') for key in state_dict)
        module.readout_state = 'loaded' if loaded else 'missing'


@MODELS.register_module()
class DiGSeg(BaseSegmentor):
    """Diffusion model as a generalist segmentation learner.

    Training step: VAE-encode the image once; draw (image, class) pairs with present and absent
    classes; VAE-encode each binary mask; the U-Net learns to produce the mask latent from
    [image latent, noisy mask latent] under the class prompt's text features.

    Inference: encode the image once; for every class of the vocabulary (in chunks) denoise a mask
    latent, decode it with the VAE into a score map in [0, 1]; the label map is the argmax over
    classes (a threshold for a one-class vocabulary).

    Args:
        backbone (dict): the frozen VAE (``LatentVAE``).
        text_encoder (dict): the frozen text tower (``OpenCLIPTextEncoder``).
        decode_head (dict): the denoising U-Net (``DiffusionMaskHead``).
        mask_readout (dict, optional): a cheap learned readout of mask latents (``LatentMaskReadout``),
            trained beside the U-Net and used at test time with ``test_cfg.mask_readout='learned'``.
        class_names (list[str] | str, optional): the vocabulary, in label order; synonyms of a class are
            comma-separated (``'sofa, couch'``). A string names a shipped vocabulary (``'ade20k_847'``,
            see ``datasets/vocabularies``) or a .txt file with one class a line. None: the dataset's
            classes (set by ``DiGSegVocabularyHook``, or from a checkpoint's ``dataset_meta``).
        train_cfg, test_cfg (dict): see ``DEFAULT_TRAIN_CFG`` and ``DEFAULT_TEST_CFG``.
    """
    loss_names = LOSS_NAMES  # the keys train_cfg.loss_weights may hold

    def __init__(self,
                 backbone: ConfigType,
                 text_encoder: ConfigType,
                 decode_head: ConfigType,
                 mask_readout: OptConfigType = None,
                 class_names: Optional[Sequence[str]] = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 pretrained: Optional[str] = None,
                 init_cfg: OptMultiConfig = None):
        # `pretrained` is accepted because mmseg.apis.init_model sets it; each part loads its own weights
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.text_encoder = MODELS.build(text_encoder)
        self.decode_head = MODELS.build(
            dict(decode_head, latent_channels=self.backbone.latent_channels, **self._head_dims()))
        self.mask_readout = None if mask_readout is None else MODELS.build(
            dict(mask_readout, latent_channels=self.backbone.latent_channels,
                 upsample_factor=self.backbone.downsample_factor))
        self.class_names = class_names
        self.train_cfg = merge_checked('train_cfg', DEFAULT_TRAIN_CFG, train_cfg)
        self.test_cfg = merge_checked('test_cfg', DEFAULT_TEST_CFG, test_cfg)
        merge_checked('train_cfg.loss_weights', dict.fromkeys(self.loss_names), self.train_cfg['loss_weights'])
        preset = self.test_cfg['preset']
        if preset is not None:
            if preset not in INFERENCE_PRESETS:
                raise ValueError(f'Unknown inference preset {preset!r}; choose one of {list(INFERENCE_PRESETS)}.')
            self.test_cfg.update(INFERENCE_PRESETS[preset])
        if self.train_cfg['objective'] not in ('denoising', 'single_step'):
            raise ValueError(f"train_cfg.objective must be 'denoising' or 'single_step', "
                             f"got {self.train_cfg['objective']!r}.")
        if self.test_cfg['init_noise'] not in ('gaussian', 'zeros'):
            raise ValueError(f"test_cfg.init_noise must be 'gaussian' or 'zeros', got {self.test_cfg['init_noise']!r}.")
        if self.test_cfg['precision'] not in PRECISIONS:
            raise ValueError(f"test_cfg.precision must be one of {list(PRECISIONS)}, got {self.test_cfg['precision']!r}.")
        if self.test_cfg['mask_readout'] not in MASK_READOUTS:
            raise ValueError(f"test_cfg.mask_readout must be one of {list(MASK_READOUTS)}, "
                             f"got {self.test_cfg['mask_readout']!r}.")
        if self.test_cfg['mask_readout'] == 'learned' and self.mask_readout is None:
            raise ValueError("test_cfg.mask_readout='learned' needs a trained readout: set "
                             "model.mask_readout=dict(type='LatentMaskReadout') and train with it, or use 'vae'.")
        if self.test_cfg['mode'] not in ('whole', 'slide'):
            raise ValueError(f"test_cfg.mode must be 'whole' or 'slide', got {self.test_cfg['mode']!r}.")
        if self.test_cfg['mode'] == 'slide':
            crop, stride = self.test_cfg['crop_size'], self.test_cfg['stride']
            if not (crop and stride):
                raise ValueError("test_cfg.mode='slide' needs crop_size=(h, w) and stride=(h, w) in image pixels.")
            if any(s > c for s, c in zip(stride, crop)):  # as MMSeg's slide_inference asserts full coverage
                raise ValueError(f'test_cfg.stride={tuple(stride)} is larger than crop_size={tuple(crop)}: pixels '
                                 'between windows would get no score. Use a stride at most the crop size.')
        if self.train_cfg['latent_ignore'] not in LATENT_IGNORE_MODES:
            raise ValueError(f"train_cfg.latent_ignore must be one of {list(LATENT_IGNORE_MODES)}, "
                             f"got {self.train_cfg['latent_ignore']!r}.")
        share = self.train_cfg['timestep_range_share']
        if not 0 < share <= 1:
            raise ValueError(f'train_cfg.timestep_range_share must be in (0, 1] (the share of pairs drawn from '
                             f'timestep_range), got {share!r}.')
        weights = self.train_cfg['loss_weights']
        if self.train_cfg['objective'] == 'single_step' and not any(weights.get(k) for k in ('bce', 'dice', 'latent', 'ce')):
            raise ValueError(f'train_cfg.loss_weights={weights} gives the single-step objective no loss: set at '
                             'least one of bce, dice, latent, ce above zero.')
        topk = self.test_cfg['topk_classes']
        if topk is not None and (not isinstance(topk, int) or topk < 1):
            raise ValueError(f'test_cfg.topk_classes must be a positive int (or None: no pruning), got {topk!r}.')
        if self.test_cfg['num_steps'] > 10:
            print_log(f"test_cfg.num_steps={self.test_cfg['num_steps']}: with trailing spacing, more than "
                      'a few steps rarely helps and costs a U-Net pass per class each.', 'current', 30)
        self.align_corners = False
        # The frozen VAE and text tower are rebuilt from their own weights (the config's paths), so
        # checkpoints keep only what trains: about 1 GB less per checkpoint at SD 2.1 + ViT-L/14 scale.
        self.register_state_dict_post_hook(_drop_frozen_parts)
        self.register_load_state_dict_pre_hook(_fill_frozen_parts)
        # 'built' (fresh), 'trained' (by this process), 'loaded', or 'missing': a loaded checkpoint had no
        # readout weights, so the readout is random and test_cfg.mask_readout='learned' is refused
        self.readout_state = 'built'
        self.register_load_state_dict_pre_hook(_note_readout_weights)

    def _head_dims(self) -> dict:
        """The text widths the U-Net's conditioning takes: prompt tokens and pooled embedding."""
        return dict(text_token_dim=self.text_encoder.token_dim, text_embed_dim=self.text_encoder.embed_dim)

    def cost_per_view(self, num_windows: int = 1) -> dict:
        """U-Net passes, VAE decodes, learned readouts and VAE encodes per image and view, for ``test_cfg``
        and the vocabulary (top-K pruning's pre-score included)."""
        cfg = self.test_cfg
        num_classes = len(self.class_names)
        kept = num_classes if cfg['topk_classes'] is None else min(cfg['topk_classes'], num_classes)
        prescore = num_classes if kept < num_classes else 0  # one step, one member, at prescore_scale
        reads = num_windows * kept + prescore  # one mask readout per class and window
        learned = cfg['mask_readout'] == 'learned'
        return dict(unet=num_windows * kept * cfg['ensemble_size'] * cfg['num_steps'] + prescore,
                    decodes=0 if learned else reads, readouts=reads if learned else 0, encodes=num_windows)

    # ---- vocabulary -------------------------------------------------------------------------------
    @property
    def class_names(self) -> List[str]:
        if self._class_names is not None:
            return self._class_names
        meta = getattr(self, 'dataset_meta', None) or {}
        if meta.get('classes'):
            return list(meta['classes'])
        raise RuntimeError('DiGSeg has no vocabulary: set `model.class_names` in the config, run it '
                           'through the Runner with a dataset (DiGSegVocabularyHook), or load a '
                           'checkpoint that has meta.dataset_meta.')

    @class_names.setter
    def class_names(self, names: Union[None, str, Sequence[str]]):
        if isinstance(names, str):  # a shipped vocabulary ('ade20k_847') or a .txt file, one class a line
            names = load_vocabulary(names)
        if names is not None:
            names = [str(n) for n in names]
            if not names:
                raise ValueError('`class_names` is empty: give at least one class name or prompt.')
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f'`class_names` repeats {duplicates}: each class needs its own name, '
                                 'or its label would be ambiguous.')
        self._class_names = names

    @contextmanager
    def vocabulary(self, class_names: Optional[Sequence[str]]):
        """Predict with another vocabulary inside the block: ``with model.vocabulary(['cat', 'sofa']):``."""
        saved = self._class_names
        if class_names is not None:
            self.class_names = class_names
        try:
            yield self.class_names
        finally:
            self._class_names = saved

    @property
    def out_channels(self) -> int:  # read by MMSeg's SegTTAModel
        return len(self.class_names)

    # ---- shared steps ---------------------------------------------------------------------------
    def extract_feat(self, inputs: Tensor) -> Tensor:
        """Images in [-1, 1] (padded to a multiple of the VAE factor) -> image latents."""
        return self.backbone.encode(inputs)

    def _pad(self, x: Tensor, value: float) -> Tensor:
        return pad_to_multiple(x, self.backbone.downsample_factor, value)

    # ---- training -------------------------------------------------------------------------------
    def _sample_pairs(self, gt: Tensor, num_classes: int) -> Tuple[Tensor, Tensor]:
        """Draw (image index, class index) pairs: present classes and absent ones per image. With
        ``num_positive=num_negative=None`` every image gets every class, in vocabulary order."""
        cfg = self.train_cfg
        if cfg['num_positive'] is None and cfg['num_negative'] is None:
            images = torch.arange(gt.shape[0], device=gt.device)
            classes = torch.arange(num_classes, device=gt.device)
            return images.repeat_interleave(num_classes), classes.repeat(gt.shape[0])
        img_idx, cls_idx = [], []
        for b in range(gt.shape[0]):
            labels = gt[b].unique()
            present = torch.zeros(num_classes, dtype=torch.bool, device=gt.device)
            present[labels[labels < num_classes]] = True
            pos = present.nonzero()[:, 0]
            neg = (~present).nonzero()[:, 0]
            pos = pos[torch.randperm(len(pos), device=gt.device)[:cfg['num_positive']]]
            neg = neg[torch.randperm(len(neg), device=gt.device)[:cfg['num_negative']]]
            chosen = torch.cat([pos, neg])
            img_idx.append(torch.full_like(chosen, b))
            cls_idx.append(chosen)
        return torch.cat(img_idx), torch.cat(cls_idx)

    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        cfg = self.train_cfg
        names = self.class_names
        gt = torch.stack([ds.gt_sem_seg.data[0] for ds in data_samples]).long()
        inputs, gt = self._pad(inputs, 0.0), self._pad(gt, cfg['ignore_index'])
        image_latents = self.extract_feat(inputs)
        img_idx, cls_idx = self._sample_pairs(gt, len(names))
        gt_pairs = gt[img_idx]
        masks = gt_pairs == cls_idx[:, None, None]
        valid = gt_pairs != cfg['ignore_index']
        latent_valid = self.latent_weights(valid)
        # the single-step objective compares decoded masks; it needs mask latents only for its latent term
        # and the learned readout
        needs_latents = (cfg['objective'] == 'denoising' or cfg['loss_weights'].get('latent', 0)
                         or self.mask_readout is not None)
        mask_latents = self.backbone.encode_masks(masks) if needs_latents else None
        pooled, tokens = self.text_encoder(names)
        image_latents, tokens, pooled = image_latents[img_idx], tokens[cls_idx], pooled[cls_idx]
        ce_pairs = (gt, img_idx, cls_idx) if cfg['loss_weights'].get('ce') else None
        if cfg['objective'] == 'denoising':
            prediction, target, predicted = self.decode_head.denoising_step(
                image_latents, mask_latents, tokens, pooled, timestep_range=cfg['timestep_range'],
                range_share=cfg['timestep_range_share'])
            losses = dict(loss_denoise=masked_mse(prediction, target, latent_valid))
            if ce_pairs is not None:  # the drawn classes compared on the decoded clean estimate
                probs = decoded_probs(self.backbone.decode_masks, predicted)
                losses['loss_ce'] = cfg['loss_weights']['ce'] * cross_class_ce(probs, *ce_pairs, cfg['ignore_index'])
        else:
            predicted = self.decode_head.single_step(image_latents, tokens, pooled)
            losses = self.decode_head.single_step_losses(predicted, mask_latents, latent_valid, masks, valid,
                                                         self.backbone.decode_masks, cfg['loss_weights'],
                                                         ce_pairs, cfg['ignore_index'])
        if self.mask_readout is not None:
            # the encoder's latents of the true masks, and the clean latents the U-Net predicts (under
            # 'denoising' from the noised sample), which is what the readout reads at test time; detached,
            # so the U-Net never learns from the readout
            readout_latents = torch.cat([mask_latents, predicted.to(mask_latents.dtype)]).detach()
            weight = cfg['loss_weights'].get('readout', DEFAULT_TRAIN_CFG['loss_weights']['readout'])
            losses['loss_readout'] = weight * self.mask_readout.loss(readout_latents, masks.repeat(2, 1, 1),
                                                                     valid.repeat(2, 1, 1))
            self.readout_state = 'trained'
        return losses

    def latent_weights(self, valid: Tensor) -> Tensor:
        """Valid image pixels (N, H, W) -> the weight of each latent pixel in the latent losses (N, 1, h, w):
        the fraction of valid pixels under it ('weight'), or 1 only where all are valid ('exclude')."""
        fraction = F.avg_pool2d(valid[:, None].float(), self.backbone.downsample_factor)
        return fraction if self.train_cfg['latent_ignore'] == 'weight' else (fraction == 1).float()

    # ---- inference ------------------------------------------------------------------------------
    def _start_noise(self, image_latent: Tensor, num_members: int, seed: int) -> Tensor:
        """Start latents for one image, shared by all its classes (so a class's score does not depend
        on which other classes are in the vocabulary or the chunk)."""
        shape = (num_members, *image_latent.shape[1:])
        if self.test_cfg['init_noise'] == 'zeros':
            return image_latent.new_zeros(shape, dtype=torch.float32)
        generator = torch.Generator(image_latent.device).manual_seed(seed)
        return torch.randn(shape, generator=generator, device=image_latent.device)  # fp32: see sample()

    @torch.no_grad()
    def _denoise_scores(self, image_latent: Tensor, pooled: Tensor, tokens: Tensor, idx: Tensor, noise: Tensor,
                        num_steps: int) -> Tensor:
        """Scores (n, H, W) in [0, 1] of the classes ``idx`` for one image latent (1, c, h, w): one U-Net
        batch of n classes x the ensemble members, averaged in latent space, then one decode per class."""
        n, num_members, (c, h, w) = len(idx), noise.shape[0], image_latent.shape[1:]
        latents = self.decode_head.sample(
            image_latent.expand(n * num_members, -1, -1, -1),
            tokens[idx].repeat_interleave(num_members, 0),
            pooled[idx].repeat_interleave(num_members, 0),
            noise.repeat(n, 1, 1, 1),
            num_steps,
            self.test_cfg['timestep_spacing'])
        latents = latents.view(n, num_members, c, h, w).mean(1)
        return self.read_masks(latents)

    def read_masks(self, latents: Tensor) -> Tensor:
        """Mask latents (n, c, h, w) -> scores (n, H, W) in [0, 1]: the full VAE decode, or the learned
        readout (``test_cfg.mask_readout``)."""
        if self.test_cfg['mask_readout'] == 'learned':
            if self.readout_state == 'missing':
                raise RuntimeError("test_cfg.mask_readout='learned', but the loaded checkpoint holds no mask_readout "
                                   "weights (it was trained without model.mask_readout): its readout is random. "
                                   "Use mask_readout='vae' (--mask-readout vae) or a checkpoint trained with it.")
            return self.mask_readout.scores(latents)
        return ((self.backbone.decode_masks(latents).float() + 1) / 2).clamp(0, 1)

    def windows(self, height: int, width: int) -> List[Tuple[int, int, int, int]]:
        """(y1, y2, x1, x2) windows: the whole image, or MMSeg's ``slide_inference`` grid."""
        if self.test_cfg['mode'] == 'whole':
            return [(0, height, 0, width)]
        (h_crop, w_crop), (h_stride, w_stride) = self.test_cfg['crop_size'], self.test_cfg['stride']
        h_grids = max(height - h_crop + h_stride - 1, 0) // h_stride + 1
        w_grids = max(width - w_crop + w_stride - 1, 0) // w_stride + 1
        boxes = []
        for h_idx in range(h_grids):
            for w_idx in range(w_grids):
                y2, x2 = min(h_idx * h_stride + h_crop, height), min(w_idx * w_stride + w_crop, width)
                boxes.append((max(y2 - h_crop, 0), y2, max(x2 - w_crop, 0), x2))
        return boxes

    def _prescore_latent(self, image: Tensor, window_latents: List[Tensor]) -> Tensor:
        """The image latent the top-K pre-score looks at: the whole image's (several windows: the image
        shrunk to fit one window), at ``prescore_scale``."""
        latent = window_latents[0]
        if len(window_latents) > 1:
            h_crop, w_crop = self.test_cfg['crop_size']
            scale = min(h_crop / image.shape[-2], w_crop / image.shape[-1])
            size = [max(1, round(s * scale)) for s in image.shape[-2:]]
            latent = self.extract_feat(self._pad(_shrink(image, size), 0.0))
        if self.test_cfg['prescore_scale'] != 1:
            size = [max(1, round(s * self.test_cfg['prescore_scale'])) for s in latent.shape[-2:]]
            latent = _shrink(latent, size)
        return latent

    @torch.no_grad()
    def select_classes(self, image: Tensor, window_latents: List[Tensor], pooled: Tensor, tokens: Tensor,
                       seed: int) -> Tensor:
        """Indices of the classes to denoise for one image: all of them, or with ``topk_classes=K`` the K
        best by a cheap pre-score (one step, one member, on the latent from ``_prescore_latent``),
        in vocabulary order. A class's pre-score is its mean score, the expected fraction of the image it
        covers: unlike the highest pixel score it does not saturate at 1 for every class with a few sure
        pixels, so the ranking stays informative."""
        num_classes, k = len(pooled), self.test_cfg['topk_classes']
        all_classes = torch.arange(num_classes, device=pooled.device)
        if k is None or k >= num_classes:
            return all_classes
        image_latent = self._prescore_latent(image, window_latents)
        noise = self._start_noise(image_latent, 1, seed)
        chunk = max(1, self.test_cfg['class_chunk_size'])
        prescore = torch.cat([
            self._denoise_scores(image_latent, pooled, tokens, all_classes[i:i + chunk], noise, 1).flatten(1).mean(1)
            for i in range(0, num_classes, chunk)
        ])
        return prescore.topk(k).indices.sort().values

    @torch.no_grad()
    def class_scores(self, inputs: Tensor, class_names: Sequence[str],
                     batch_img_metas: Optional[List[dict]] = None) -> Iterator[Iterator[Tuple[Tensor, Tensor]]]:
        """For each image of ``inputs`` (B, 3, H, W) in [-1, 1], an iterator over (class indices, scores
        (n, H, W) in [0, 1]) chunks, ``class_chunk_size`` classes per U-Net batch, for the classes
        ``select_classes`` keeps, in vocabulary order; chunks are computed as they are consumed. The start
        noise is seeded by each image's path in ``batch_img_metas``, or its pixels (``image_seeds``).

        Each image (or each window, with ``mode='slide'``) is VAE-encoded once and shared by every class,
        step and ensemble member; windows are averaged where they overlap, as MMSeg does."""
        cfg = self.test_cfg
        pooled, tokens = self.text_encoder(class_names)
        for b, seed in enumerate(image_seeds(inputs, batch_img_metas, cfg['seed'])):
            image = inputs[b:b + 1]
            boxes = self.windows(*image.shape[-2:])
            latents = [self.extract_feat(self._pad(image[..., y1:y2, x1:x2], 0.0)) for y1, y2, x1, x2 in boxes]
            kept = self.select_classes(image, latents, pooled, tokens, seed)
            yield self._window_chunks(image.shape[-2:], boxes, latents, pooled, tokens, kept, seed)

    def _window_chunks(self, size: Tuple[int, int], boxes: list, latents: List[Tensor], pooled: Tensor,
                       tokens: Tensor, class_idx: Tensor, seed: int) -> Iterator[Tuple[Tensor, Tensor]]:
        cfg = self.test_cfg
        noise = self._start_noise(latents[0], cfg['ensemble_size'], seed)  # windows share one size
        count = latents[0].new_zeros(size, dtype=torch.float32)
        for y1, y2, x1, x2 in boxes:
            count[y1:y2, x1:x2] += 1
        chunk = max(1, cfg['class_chunk_size'])
        for start in range(0, len(class_idx), chunk):
            idx = class_idx[start:start + chunk]
            if len(boxes) == 1:  # the whole image: no accumulation needed
                yield idx, self._denoise_scores(latents[0], pooled, tokens, idx, noise, cfg['num_steps'])[
                    :, :size[0], :size[1]]
                continue
            total = count.new_zeros((len(idx), *size))
            for (y1, y2, x1, x2), latent in zip(boxes, latents):
                scores = self._denoise_scores(latent, pooled, tokens, idx, noise, cfg['num_steps'])
                total[:, y1:y2, x1:x2] += scores[:, :y2 - y1, :x2 - x1]
            yield idx, total / count

    @torch.no_grad()
    def score_classes(self, inputs: Tensor, class_names: Sequence[str]) -> Tensor:
        """Images (B, 3, H, W) in [-1, 1] -> per-class scores (B, C, H, W) in [0, 1]; 0 for pruned classes."""
        scores = inputs.new_zeros(inputs.shape[0], len(class_names), *inputs.shape[-2:], dtype=torch.float32)
        for b, chunks in enumerate(self.class_scores(inputs, class_names)):
            for idx, chunk_scores in chunks:
                scores[b, idx] = chunk_scores
        return scores

    @staticmethod
    def logits_to_scores(logits: Tensor, dim: int = 0) -> Tensor:
        """``seg_logits`` -> per-class scores in [0, 1] (binary mode: the sigmoid, each class on its own)."""
        return logits.sigmoid()

    def encode_decode(self, inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        """Images -> per-class logits (B, C, H, W) at the input size (see ``scores_to_logits``);
        classes pruned by ``topk_classes`` get ``PRUNED_LOGIT``, below every computed logit."""
        logits = inputs.new_full((inputs.shape[0], len(self.class_names), *inputs.shape[-2:]), PRUNED_LOGIT,
                                 dtype=torch.float32)
        for b, chunks in enumerate(self.class_scores(inputs, self.class_names, batch_img_metas)):
            for idx, scores in chunks:
                logits[b, idx] = scores_to_logits(scores)
        return logits

    def inference_autocast(self, device_type: str):
        """``test_cfg.precision``: the U-Net and VAE under bf16/fp16 autocast; text features stay fp32. On a CPU
        without native half arithmetic (``cpu_computes_natively``) fp32 instead, with a warning once."""
        dtype = PRECISIONS[self.test_cfg['precision']]
        if dtype is not None and device_type == 'cpu' and not cpu_computes_natively(dtype):
            if not getattr(self, '_warned_cpu_precision', False):
                print_log(f"test_cfg.precision={self.test_cfg['precision']!r}: this CPU "
                          f'({torch.backends.cpu.get_cpu_capability()}) has no native {dtype} arithmetic, where '
                          'autocast runs about 100x slower than fp32; predicting in fp32 instead.', 'current', 30)
                self._warned_cpu_precision = True
            dtype = None
        return torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def _to_original(self, logits: Tensor, img_meta: dict) -> Tensor:
        """Logits (n, H, W) at the input size -> the original image's size, as ``postprocess_result``
        does it (drop the test-time padding, undo a flip, bilinear resize)."""
        H, W = logits.shape[-2:]
        left, right, top, bottom = img_meta.get('img_padding_size', img_meta.get('padding_size', [0] * 4))
        logits = logits[None, :, top:H - bottom, left:W - right]
        if img_meta.get('flip'):
            logits = logits.flip(dims=(3, ) if img_meta.get('flip_direction') == 'horizontal' else (2, ))
        if tuple(logits.shape[-2:]) == tuple(img_meta['ori_shape'][:2]):
            return logits[0]  # a bilinear resize to the same size is the identity, at a cost per class
        return resize(logits, size=img_meta['ori_shape'], mode='bilinear', align_corners=self.align_corners,
                      warning=False)[0]

    def postprocess_result(self, seg_logits: Tensor, data_samples: OptSampleList = None) -> SampleList:
        """MMSeg's ``postprocess_result`` (``_to_original``, then the argmax over classes), without the two
        costs that grow with the vocabulary and buy nothing: the resize when the logits already have the
        original size, and an argmax across the class axis's stride (the argmax of a (pixels, classes) copy:
        at 150 classes on a 64x64 image, 7 ms of palette mode's 50 ms). One class (sigmoid and threshold)
        and calls without data samples go to MMSeg's."""
        if data_samples is None or seg_logits.shape[1] == 1:
            return super().postprocess_result(seg_logits, data_samples)
        for logits, data_sample in zip(seg_logits, data_samples):
            logits = self._to_original(logits, data_sample.metainfo)
            labels = logits.flatten(1).T.contiguous().argmax(1).view(1, *logits.shape[1:])  # ties: first class
            data_sample.set_data(dict(seg_logits=PixelData(data=logits), pred_sem_seg=PixelData(data=labels)))
        return data_samples

    def _predict_labels_only(self, inputs: Tensor, data_samples: SampleList) -> SampleList:
        """Label maps by a running argmax over class chunks: memory does not grow with the vocabulary
        (no (C, H, W) logits are kept). Same labels as ``postprocess_result`` on the full logits: the
        resize is per class, and ties go to the first class in both."""
        metas = [ds.metainfo for ds in data_samples]
        for data_sample, chunks in zip(data_samples, self.class_scores(inputs, self.class_names, metas)):
            best = labels = None
            for idx, scores in chunks:
                chunk_best, chunk_arg = self._to_original(scores_to_logits(scores),
                                                          data_sample.metainfo).max(0)
                if best is None:
                    best, labels = chunk_best, idx[chunk_arg]
                else:
                    better = chunk_best > best
                    best, labels = torch.where(better, chunk_best, best), torch.where(better, idx[chunk_arg], labels)
            data_sample.set_data({'pred_sem_seg': PixelData(data=labels[None])})
        return data_samples

    def predict(self, inputs: Tensor, data_samples: OptSampleList = None) -> SampleList:
        with self.inference_autocast(inputs.device.type):
            return self._predict(inputs, data_samples)

    def _predict(self, inputs: Tensor, data_samples: OptSampleList = None) -> SampleList:
        if data_samples is not None and not self.test_cfg['return_logits'] and len(self.class_names) > 1:
            return self._predict_labels_only(inputs, data_samples)
        if data_samples is not None:
            batch_img_metas = [ds.metainfo for ds in data_samples]
        else:
            shape = inputs.shape[2:]
            batch_img_metas = [dict(ori_shape=shape, img_shape=shape, pad_shape=shape,
                                    padding_size=[0, 0, 0, 0])] * inputs.shape[0]
        seg_logits = self.encode_decode(inputs, batch_img_metas)
        return self.postprocess_result(seg_logits, data_samples)

    def _forward(self, inputs: Tensor, data_samples: OptSampleList = None) -> Tensor:
        with self.inference_autocast(inputs.device.type):
            return self.encode_decode(inputs, [ds.metainfo for ds in data_samples or []])
