"""DiGSeg: a latent diffusion model as a text-conditioned, per-class mask generator."""
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

DEFAULT_TRAIN_CFG = dict(
    objective='denoising',  # or 'single_step' (end to end through the frozen VAE decoder)
    num_positive=2,  # present classes drawn per image and step
    num_negative=1,  # absent classes (all-negative masks) drawn per image and step
    timestep_range=None,  # denoising only: (low, high) training timesteps; None: all. Few-step
    # sampling starts at t=T, so biasing training toward high noise spends the budget where it is used.
    loss_weights=dict(bce=1.0, dice=1.0, latent=0.0),  # single_step only
    ignore_index=255)

DEFAULT_TEST_CFG = dict(
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
    seed=0)  # start noise is seeded per image: predictions are reproducible and order-independent


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


def pad_to_multiple(x: Tensor, multiple: int, value: float) -> Tensor:
    """Pad the last two dims on the bottom/right up to a multiple (the VAE needs it)."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), value=value)


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
        class_names (list[str] | str, optional): the vocabulary, in label order; synonyms of a class are
            comma-separated (``'sofa, couch'``). A string names a shipped vocabulary (``'ade20k_847'``,
            see ``datasets/vocabularies``) or a .txt file with one class a line. None: the dataset's
            classes (set by ``DiGSegVocabularyHook``, or from a checkpoint's ``dataset_meta``).
        train_cfg, test_cfg (dict): see ``DEFAULT_TRAIN_CFG`` and ``DEFAULT_TEST_CFG``.
    """

    def __init__(self,
                 backbone: ConfigType,
                 text_encoder: ConfigType,
                 decode_head: ConfigType,
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
            dict(decode_head,
                 latent_channels=self.backbone.latent_channels,
                 text_token_dim=self.text_encoder.token_dim,
                 text_embed_dim=self.text_encoder.embed_dim))
        self.class_names = class_names
        self.train_cfg = {**DEFAULT_TRAIN_CFG, **(train_cfg or {})}
        self.test_cfg = {**DEFAULT_TEST_CFG, **(test_cfg or {})}
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
        topk = self.test_cfg['topk_classes']
        if topk is not None and (not isinstance(topk, int) or topk < 1):
            raise ValueError(f'test_cfg.topk_classes must be a positive int (or None: no pruning), got {topk!r}.')
        if self.test_cfg['num_steps'] > 10:
            print_log(f"test_cfg.num_steps={self.test_cfg['num_steps']}: with trailing spacing, more than "
                      'a few steps rarely helps and costs a U-Net pass per class each.', 'current', 30)
        self.align_corners = False

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
        """Draw (image index, class index) pairs: present classes and absent ones per image."""
        cfg = self.train_cfg
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
        gt = gt[img_idx]
        masks = gt == cls_idx[:, None, None]
        valid = gt != cfg['ignore_index']
        # the single-step objective compares decoded masks; it needs mask latents only for its latent term
        needs_latents = cfg['objective'] == 'denoising' or cfg['loss_weights'].get('latent', 0)
        mask_latents = self.backbone.encode_masks(masks) if needs_latents else None
        pooled, tokens = self.text_encoder(names)
        args = (image_latents[img_idx], mask_latents, tokens[cls_idx], pooled[cls_idx])
        if cfg['objective'] == 'denoising':
            return self.decode_head.loss_denoising(*args, timestep_range=cfg['timestep_range'])
        return self.decode_head.loss_single_step(*args, masks, valid, self.backbone.decode_masks,
                                                 cfg['loss_weights'])

    # ---- inference ------------------------------------------------------------------------------
    def _start_noise(self, image_latent: Tensor, num_members: int, seed: int) -> Tensor:
        """Start latents for one image, shared by all its classes (so a class's score does not depend
        on which other classes are in the vocabulary or the chunk)."""
        shape = (num_members, *image_latent.shape[1:])
        if self.test_cfg['init_noise'] == 'zeros':
            return image_latent.new_zeros(shape)
        generator = torch.Generator(image_latent.device).manual_seed(seed)
        return torch.randn(shape, generator=generator, device=image_latent.device).to(image_latent.dtype)

    @torch.no_grad()
    def _score_chunks(self, image_latent: Tensor, pooled: Tensor, tokens: Tensor, class_idx: Tensor,
                      noise: Tensor, num_steps: int) -> Iterator[Tuple[Tensor, Tensor]]:
        """Yield (class indices, scores (n, H, W) in [0, 1]) for one image latent (1, c, h, w), a chunk
        of ``class_chunk_size`` classes (times the ensemble members) per U-Net batch."""
        num_members, (c, h, w) = noise.shape[0], image_latent.shape[1:]
        chunk = max(1, self.test_cfg['class_chunk_size'])
        for start in range(0, len(class_idx), chunk):
            idx = class_idx[start:start + chunk]
            n = len(idx)
            latents = self.decode_head.sample(
                image_latent.expand(n * num_members, -1, -1, -1),
                tokens[idx].repeat_interleave(num_members, 0),
                pooled[idx].repeat_interleave(num_members, 0),
                noise.repeat(n, 1, 1, 1),
                num_steps,
                self.test_cfg['timestep_spacing'])
            latents = latents.view(n, num_members, c, h, w).mean(1)  # ensemble: average in latent space
            yield idx, ((self.backbone.decode_masks(latents) + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def select_classes(self, image_latent: Tensor, pooled: Tensor, tokens: Tensor, seed: int) -> Tensor:
        """Indices of the classes to denoise for one image: all of them, or with ``topk_classes=K`` the K
        best by a cheap pre-score (one step, one member, on the image latent scaled by ``prescore_scale``),
        in vocabulary order. A class's pre-score is its mean score, the expected fraction of the image it
        covers: unlike the highest pixel score it does not saturate at 1 for every class with a few sure
        pixels, so the ranking stays informative."""
        cfg = self.test_cfg
        num_classes, k = len(pooled), cfg['topk_classes']
        all_classes = torch.arange(num_classes, device=pooled.device)
        if k is None or k >= num_classes:
            return all_classes
        if cfg['prescore_scale'] != 1:
            size = [max(1, round(s * cfg['prescore_scale'])) for s in image_latent.shape[-2:]]
            image_latent = F.interpolate(image_latent, size=size, mode='bilinear', antialias=True)
        prescore = pooled.new_empty(num_classes)
        noise = self._start_noise(image_latent, 1, seed)
        for idx, scores in self._score_chunks(image_latent, pooled, tokens, all_classes, noise, num_steps=1):
            prescore[idx] = scores.flatten(1).mean(1)
        return prescore.topk(k).indices.sort().values

    @torch.no_grad()
    def class_scores(self, image_latents: Tensor, class_names: Sequence[str]) -> Iterator[Iterator]:
        """For each image, an iterator over (class indices, scores (n, H, W)) chunks for the classes
        ``select_classes`` keeps, in vocabulary order. Each image latent is computed once and shared by
        every class, step and ensemble member; chunks are computed as they are consumed."""
        cfg = self.test_cfg
        pooled, tokens = self.text_encoder(class_names)
        for b in range(image_latents.shape[0]):
            latent = image_latents[b:b + 1]
            kept = self.select_classes(latent, pooled, tokens, cfg['seed'] + b)
            noise = self._start_noise(latent, cfg['ensemble_size'], cfg['seed'] + b)
            yield self._score_chunks(latent, pooled, tokens, kept, noise, cfg['num_steps'])

    @torch.no_grad()
    def score_classes(self, image_latents: Tensor, class_names: Sequence[str]) -> Tensor:
        """Image latents (B, c, h, w) -> per-class scores (B, C, H, W) in [0, 1]; 0 for pruned classes."""
        factor = self.backbone.downsample_factor
        B, _, h, w = image_latents.shape
        scores = image_latents.new_zeros(B, len(class_names), h * factor, w * factor)
        for b, chunks in enumerate(self.class_scores(image_latents, class_names)):
            for idx, chunk_scores in chunks:
                scores[b, idx] = chunk_scores
        return scores

    def encode_decode(self, inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        """Images -> per-class logits (B, C, H, W) at the input size (see ``scores_to_logits``);
        classes pruned by ``topk_classes`` get ``PRUNED_LOGIT``, below every computed logit."""
        H, W = inputs.shape[-2:]
        image_latents = self.extract_feat(self._pad(inputs, 0.0))
        logits = inputs.new_full((inputs.shape[0], len(self.class_names), H, W), PRUNED_LOGIT)
        for b, chunks in enumerate(self.class_scores(image_latents, self.class_names)):
            for idx, scores in chunks:
                logits[b, idx] = scores_to_logits(scores[:, :H, :W])
        return logits

    def _to_original(self, logits: Tensor, img_meta: dict) -> Tensor:
        """Logits (n, H, W) at the input size -> the original image's size, as ``postprocess_result``
        does it (drop the test-time padding, undo a flip, bilinear resize)."""
        H, W = logits.shape[-2:]
        left, right, top, bottom = img_meta.get('img_padding_size', img_meta.get('padding_size', [0] * 4))
        logits = logits[None, :, top:H - bottom, left:W - right]
        if img_meta.get('flip'):
            logits = logits.flip(dims=(3, ) if img_meta.get('flip_direction') == 'horizontal' else (2, ))
        return resize(logits, size=img_meta['ori_shape'], mode='bilinear', align_corners=self.align_corners,
                      warning=False)[0]

    def _predict_labels_only(self, inputs: Tensor, data_samples: SampleList) -> SampleList:
        """Label maps by a running argmax over class chunks: memory does not grow with the vocabulary
        (no (C, H, W) logits are kept). Same labels as ``postprocess_result`` on the full logits: the
        resize is per class, and ties go to the first class in both."""
        H, W = inputs.shape[-2:]
        image_latents = self.extract_feat(self._pad(inputs, 0.0))
        for data_sample, chunks in zip(data_samples, self.class_scores(image_latents, self.class_names)):
            best = labels = None
            for idx, scores in chunks:
                chunk_best, chunk_arg = self._to_original(scores_to_logits(scores[:, :H, :W]),
                                                          data_sample.metainfo).max(0)
                if best is None:
                    best, labels = chunk_best, idx[chunk_arg]
                else:
                    better = chunk_best > best
                    best, labels = torch.where(better, chunk_best, best), torch.where(better, idx[chunk_arg], labels)
            data_sample.set_data({'pred_sem_seg': PixelData(data=labels[None])})
        return data_samples

    def predict(self, inputs: Tensor, data_samples: OptSampleList = None) -> SampleList:
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
        return self.encode_decode(inputs, [ds.metainfo for ds in data_samples or []])
