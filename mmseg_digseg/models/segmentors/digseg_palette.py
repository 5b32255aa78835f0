"""DiGSeg's palette mode (beyond the paper): one colour-coded mask per image instead of one mask per class."""
import contextlib
import functools
import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mmseg.registry import MODELS
from mmseg.utils import SampleList
from ..decode_heads.diffusion_mask_head import masked_mse
from .digseg import DiGSeg, image_seeds

# Candidate colours: a 16-level lattice of the RGB cube, in [-1, 1] (the VAE's image range)
PALETTE_LEVELS = 16
COLOUR_FREQUENCIES = 4  # sin/cos features of each channel at pi * 1..4, next to the channel itself


def palette_colours(num_colours: int) -> Tensor:
    """``num_colours`` maximally separated RGB colours in [-1, 1], (N, 3): greedy farthest-point order on
    the lattice from black, so the first N of a longer palette are as separated as a palette of N."""
    return _palette_colours(num_colours).clone()


@functools.lru_cache(maxsize=16)  # built once per vocabulary size: the greedy search is not free per image
def _palette_colours(num_colours: int) -> Tensor:
    levels = torch.linspace(-1, 1, PALETTE_LEVELS, dtype=torch.float64)
    candidates = torch.cartesian_prod(levels, levels, levels)
    if num_colours > len(candidates):
        raise ValueError(f'A palette has at most {len(candidates)} colours, {num_colours} were asked for.')
    chosen = [0]
    distance = ((candidates - candidates[0])**2).sum(1)
    for _ in range(num_colours - 1):
        chosen.append(int(distance.argmax()))
        distance = torch.minimum(distance, ((candidates - candidates[chosen[-1]])**2).sum(1))
    return candidates[chosen].float()


def min_colour_distance(colours: Tensor) -> float:
    """The smallest distance between two colours of a palette, in 8-bit units (0-255 per channel)."""
    return _min_colour_distance(tuple(map(tuple, colours.detach().cpu().tolist())))


@functools.lru_cache(maxsize=64)  # asked for every decoded image
def _min_colour_distance(colours: tuple) -> float:
    colours = torch.tensor(colours, dtype=torch.float64)
    if len(colours) < 2:
        return math.inf
    distances = torch.cdist(colours.double(), colours.double())
    return float((distances + torch.eye(len(colours), dtype=distances.dtype) * 1e9).min() * 127.5)


class PaletteCapacityError(ValueError):
    """A vocabulary with more classes than palette mode can keep apart (``DiGSegPalette.colours``)."""


def paint(labels: Tensor, colours: Tensor, ignore_index: int = 255) -> Tensor:
    """Label maps (B, H, W) -> colour masks (B, 3, H, W) in [-1, 1], ``colours`` (B, C, 3) or (C, 3); ignored
    pixels are mid-grey (they are left out of every loss)."""
    if colours.dim() == 2:
        colours = colours.expand(labels.shape[0], -1, -1)
    valid = labels != ignore_index
    index = torch.where(valid, labels, 0).flatten(1)  # (B, HW)
    painted = torch.gather(colours, 1, index[..., None].expand(-1, -1, 3))  # (B, HW, 3)
    painted = painted * valid.flatten(1)[..., None]
    return painted.transpose(1, 2).reshape(labels.shape[0], 3, *labels.shape[1:])


def colour_distance_logits(images: Tensor, colours: Tensor, temperature: float) -> Tensor:
    """Decoded colour masks (B, 3, H, W) -> per-class logits (B, C, H, W): minus each pixel's squared
    distance to every class colour, divided by ``temperature`` times the squared minimum distance of the
    image's colours (so the sharpness does not depend on how many colours share the cube). Their softmax
    over classes is each pixel's class probability."""
    if colours.dim() == 2:
        colours = colours.expand(images.shape[0], -1, -1)
    d_min = [min_colour_distance(image_colours) / 127.5 for image_colours in colours]  # shuffled: per image
    scale = images.new_tensor([temperature * (d**2 if math.isfinite(d) else 1.0) for d in d_min])[:, None, None]
    pixels = images.float().flatten(2)  # (B, 3, HW)
    colours = colours.float()
    # -|x - c|^2 = 2 x.c - |c|^2 - |x|^2: one small matmul, already (B, C, HW), no (HW, C) transpose
    logits = torch.bmm(colours, pixels).mul_(2).sub_((colours**2).sum(-1, keepdim=True))
    logits = logits.sub_((pixels**2).sum(1, keepdim=True)).div_(scale.float())
    return logits.view(images.shape[0], -1, *images.shape[-2:])


def colour_features(colours: Tensor) -> Tensor:
    """(..., 3) colours -> (..., 3 + 6 * COLOUR_FREQUENCIES): the channels and their sin/cos at a few
    frequencies, so that the U-Net's cross-attention can tell nearby colours apart."""
    freqs = math.pi * torch.arange(1, COLOUR_FREQUENCIES + 1, device=colours.device, dtype=colours.dtype)
    angles = (colours[..., None] * freqs).flatten(-2)
    return torch.cat([colours, angles.sin(), angles.cos()], dim=-1)


def attention_binding_loss(attention_logits: Sequence[Tensor], labels: Tensor, num_classes: int,
                           ignore_index: int = 255) -> Tensor:
    """Cross-entropy of each pixel's cross-attention over the class tokens ((B, pixels, C) per layer) against
    the classes under that pixel at the layer's resolution (their shares of its area; ignored pixels left out),
    averaged over the layers. It teaches the path from a class's token to its pixels, which colours drawn per
    image (``shuffle_palette``) need and the colour loss alone did not start (docs/benchmarks.md)."""
    valid = labels != ignore_index
    one_hot = F.one_hot(torch.where(valid, labels, 0), num_classes).permute(0, 3, 1, 2).float()
    one_hot = one_hot * valid[:, None]
    H, W = labels.shape[-2:]
    losses = []
    for logits in attention_logits:
        stride = math.sqrt(H * W / logits.shape[1])
        h, w = round(H / stride), round(W / stride)
        if h * w != logits.shape[1] or logits.shape[-1] != num_classes:
            raise ValueError(f'Attention logits {tuple(logits.shape)} do not match a {H}x{W} label map of '
                             f'{num_classes} classes.')
        share = F.adaptive_avg_pool2d(one_hot, (h, w)).flatten(2).transpose(1, 2)  # (B, pixels, C)
        covered = share.sum(-1)  # the valid part of each pixel
        target = share / covered.clamp_min(1e-6)[..., None]
        ce = -(target * logits.float().log_softmax(-1)).sum(-1)
        losses.append((ce * covered).sum() / covered.sum().clamp_min(1e-6))
    return torch.stack(losses).mean()


COLOUR_FEATURE_DIM = 3 + 6 * COLOUR_FREQUENCIES
# single_step: cross-entropy over the decoded mask's colour distances, and MSE to the painted mask's latent;
# attention: attention_binding_loss (either objective); binary mode's bce, dice and readout have no meaning here
# (denoising adds the diffusion MSE)
PALETTE_LOSS_WEIGHTS = dict(ce=1.0, latent=0.0, attention=0.0)


@MODELS.register_module()
class DiGSegPalette(DiGSeg):
    """DiGSeg in palette mode: the whole label map as one colour-coded mask per image.

    Each class of the vocabulary gets a colour (``palette_colours``: maximally separated); the label map is
    painted with them, VAE-encoded once and denoised like DiGSeg's binary masks, under a prompt that binds
    colours to classes: one cross-attention token per class, its pooled CLIP embedding next to features of
    its colour. Decoding measures each pixel's distance to every class colour, which gives per-class logits,
    so MMSeg's argmax, TTA (softmax averaging) and evaluators work unchanged; ``seg_logits.softmax(0)`` are the
    classes' probabilities (``logits_to_scores``). Inference costs one U-Net pass per step and
    member and one VAE decode per image, whatever the vocabulary's size (the cross-attention over one
    token per class aside). With ``train_cfg.shuffle_palette`` each training image draws its own colours,
    so colours carry no class meaning of their own and a new vocabulary works.

    Beyond the palette's capacity (``min_colour_distance``), vocabularies are refused: use binary mode.

    Args:
        min_colour_distance (float): the smallest distance between two class colours (8-bit units)
            that a vocabulary may need; ``tools/analysis_tools/palette_roundtrip.py`` measures what the
            VAE keeps apart.
        temperature (float): decoding sharpness (``colour_distance_logits``).
        palette_size (int, optional): with ``shuffle_palette``, training draws each image's colours from the
            first ``max(palette_size, vocabulary size)`` palette colours (never test time's assignment, the
            first N in order).
        Other arguments as ``DiGSeg``; ``train_cfg`` adds ``shuffle_palette``; its losses are ``ce``
        (per-pixel cross-entropy over the colour-distance logits of the decoded mask, single_step),
        ``latent`` (MSE to the painted mask's latent) and ``attention`` (``attention_binding_loss``: which class
        token each pixel's cross-attention reads); denoising adds the diffusion MSE.
    """

    def __init__(self, *args, min_colour_distance: float = 32.0, temperature: float = 1.0,
                 palette_size: Optional[int] = None, **kwargs):
        if (kwargs.get('test_cfg') or {}).get('mask_readout', 'vae') != 'vae':
            raise ValueError("test_cfg.mask_readout reads binary masks; palette mode decodes its colour mask with the "
                             "VAE: leave it 'vae' (or use binary mode, model.type='DiGSeg', for the learned readout).")
        train_cfg = dict(kwargs.pop('train_cfg', None) or {})
        shuffle_palette = train_cfg.pop('shuffle_palette', True)
        train_cfg['loss_weights'] = self._loss_weights(train_cfg)
        # every class of every image is in each training step by construction
        train_cfg.update(num_positive=None, num_negative=None)
        super().__init__(*args, train_cfg=train_cfg, **kwargs)
        self.shuffle_palette = shuffle_palette
        self.min_colour_distance, self.temperature, self.palette_size = min_colour_distance, temperature, palette_size
        if self.mask_readout is not None:
            raise ValueError('model.mask_readout reads binary masks; palette mode decodes colour masks with the VAE.')
        if self.test_cfg['topk_classes'] is not None:
            raise ValueError('test_cfg.topk_classes prunes per-class passes; palette mode has one pass for every '
                             'class: leave it None.')
        if self._class_names is not None:
            self.colours(len(self._class_names))  # refuse a vocabulary too large for the palette now

    @staticmethod
    def _loss_weights(train_cfg: dict) -> Dict[str, float]:
        """``PALETTE_LOSS_WEIGHTS`` updated by the config's, refusing binary mode's losses and all-zero weights
        (binary mode's defaults would give ce=0: a model that trains on nothing)."""
        given = dict(train_cfg.get('loss_weights') or {})
        unused = sorted(set(given) - set(PALETTE_LOSS_WEIGHTS))
        if unused:
            raise ValueError(f'train_cfg.loss_weights {unused}: palette mode has no such loss; it uses '
                             f'{sorted(PALETTE_LOSS_WEIGHTS)} (single_step; denoising uses the diffusion MSE).')
        weights = {**PALETTE_LOSS_WEIGHTS, **given}
        if train_cfg.get('objective', 'denoising') == 'single_step' and not (weights['ce'] or weights['latent']):
            raise ValueError(f'train_cfg.loss_weights={weights}: every palette loss is zero, so the model would '
                             'train on nothing. Set ce (and/or latent) above zero.')
        return weights

    loss_names = tuple(PALETTE_LOSS_WEIGHTS)

    def _head_dims(self) -> Dict[str, int]:
        # one token per class: [pooled CLIP embedding, colour features]
        return dict(text_token_dim=self.text_encoder.embed_dim + COLOUR_FEATURE_DIM,
                    text_embed_dim=self.text_encoder.embed_dim)

    def colours(self, num_classes: int) -> Tensor:
        """The first ``num_classes`` palette colours (C, 3), refusing vocabularies they cannot keep apart."""
        colours = palette_colours(num_classes)
        distance = min_colour_distance(colours)
        if distance < self.min_colour_distance:
            raise PaletteCapacityError(
                f'{num_classes} classes are too many for palette mode: their colours would be {distance:.1f} '
                f'apart (8-bit units), under min_colour_distance={self.min_colour_distance}. Use binary mode '
                f"(model.type='DiGSeg', one mask per class) for this vocabulary.")
        return colours

    def vocabulary_prompt(self, pooled: Tensor, colours: Tensor):
        """Class embeddings (C, E) and colours (B, C, 3) -> cross-attention tokens (B, C, E + colour features)
        and the class-embedding input (B, E): the vocabulary's mean embedding.

        A token holds its class's embedding less the vocabulary's mean, rescaled to unit length: CLIP's
        embeddings of class names share most of their direction (cosine 0.65-0.93 between the 6 SynthShapes
        names in the tiny tower), so what tells the tokens apart would otherwise be their colours, which
        carry no class meaning when shuffled (with it, the attention loss fell 1.79 -> 0.66 in 60 steps of a
        test batch, without it to 1.63)."""
        mean = pooled.mean(0, keepdim=True)
        classes = F.normalize(pooled - mean, dim=-1) if len(pooled) > 1 else pooled
        tokens = torch.cat([classes.expand(colours.shape[0], -1, -1), colour_features(colours)], dim=-1)
        return tokens, mean.expand(colours.shape[0], -1)

    def _training_colours(self, batch_size: int, num_classes: int, device) -> Tensor:
        colours = self.colours(num_classes).to(device)
        pool = palette_colours(max(self.palette_size or 0, num_classes)).to(device)
        if not self.shuffle_palette or len(pool) == 1:
            return colours.expand(batch_size, -1, -1)
        # test time's assignment (the first N colours in order) is held out, so that a shuffled model's test
        # score measures colours bound through the prompt, never an assignment it was trained on
        draws = []
        while len(draws) < batch_size:
            drawn = pool[torch.randperm(len(pool), device=device)[:num_classes]]
            if not torch.equal(drawn, colours):
                draws.append(drawn)
        return torch.stack(draws)

    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        cfg = self.train_cfg
        ignore_index, weights = cfg['ignore_index'], cfg['loss_weights']
        gt = torch.stack([ds.gt_sem_seg.data[0] for ds in data_samples]).long()
        inputs, gt = self._pad(inputs, 0.0), self._pad(gt, ignore_index)
        image_latents = self.extract_feat(inputs)
        colours = self._training_colours(gt.shape[0], len(self.class_names), gt.device)
        pooled, _ = self.text_encoder(self.class_names)
        tokens, mean_pooled = self.vocabulary_prompt(pooled, colours)
        latent_valid = self.latent_weights(gt != ignore_index)
        painted_latents = self.backbone.encode(paint(gt, colours, ignore_index))
        head = self.decode_head
        with head.recording_cross_attention() if weights['attention'] else contextlib.nullcontext() as attention:
            if cfg['objective'] == 'denoising':
                losses = head.loss_denoising(image_latents, painted_latents, tokens, mean_pooled, latent_valid,
                                             timestep_range=cfg['timestep_range'],
                                             range_share=cfg['timestep_range_share'])
            else:
                clean = head.single_step(image_latents, tokens, mean_pooled)
        if cfg['objective'] != 'denoising':
            logits = colour_distance_logits(self.backbone.decode(clean), colours, self.temperature)
            losses = dict(loss_ce=weights['ce'] * F.cross_entropy(logits, gt, ignore_index=ignore_index))
            if weights['latent']:
                losses['loss_latent'] = weights['latent'] * masked_mse(clean, painted_latents, latent_valid)
        if weights['attention']:
            losses['loss_attention'] = weights['attention'] * attention_binding_loss(attention, gt, len(colours[0]),
                                                                                    ignore_index)
        return losses

    @torch.no_grad()
    def palette_logits(self, image_latent: Tensor, tokens: Tensor, mean_pooled: Tensor, seed: int) -> Tensor:
        """One image latent (1, c, h, w) -> per-class logits (C, H, W): denoise one colour mask (the
        ensemble's members averaged in latent space) and decode it once."""
        cfg = self.test_cfg
        noise = self._start_noise(image_latent, cfg['ensemble_size'], seed)
        members = noise.shape[0]
        latents = self.decode_head.sample(image_latent.expand(members, -1, -1, -1), tokens.expand(members, -1, -1),
                                          mean_pooled.expand(members, -1), noise, cfg['num_steps'],
                                          cfg['timestep_spacing'])
        decoded = self.backbone.decode(latents.mean(0, keepdim=True))
        colours = self.colours(tokens.shape[1]).to(tokens.device)
        return colour_distance_logits(decoded, colours, self.temperature)[0]

    @torch.no_grad()
    def encode_decode(self, inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        """Images -> per-class logits (B, C, H, W); windows (``mode='slide'``) are averaged where they overlap."""
        if self.test_cfg['topk_classes'] is not None:  # set after building (tools/infer.py --topk)
            raise ValueError('test_cfg.topk_classes prunes per-class passes; palette mode has one pass for every '
                             'class: leave it None (no --topk).')
        names = self.class_names
        pooled, _ = self.text_encoder(names)
        tokens, mean_pooled = self.vocabulary_prompt(pooled, self.colours(len(names)).to(pooled.device)[None])
        H, W = inputs.shape[-2:]
        logits = inputs.new_zeros((inputs.shape[0], len(names), H, W), dtype=torch.float32)
        count = inputs.new_zeros((H, W), dtype=torch.float32)
        boxes = self.windows(H, W)
        for y1, y2, x1, x2 in boxes:
            count[y1:y2, x1:x2] += 1
        for b, seed in enumerate(image_seeds(inputs, batch_img_metas, self.test_cfg['seed'])):
            for y1, y2, x1, x2 in boxes:
                latent = self.extract_feat(self._pad(inputs[b:b + 1, :, y1:y2, x1:x2], 0.0))
                window = self.palette_logits(latent, tokens, mean_pooled, seed)
                logits[b, :, y1:y2, x1:x2] += window[:, :y2 - y1, :x2 - x1]
        return logits / count

    def _predict_labels_only(self, inputs: Tensor, data_samples: SampleList) -> SampleList:
        # the logits of every class come from one decode: nothing to save by a running argmax
        return self.postprocess_result(self.encode_decode(inputs, [ds.metainfo for ds in data_samples]),
                                       data_samples)

    def score_classes(self, inputs: Tensor, class_names: Sequence[str]) -> Tensor:
        with self.vocabulary(class_names):
            return self.logits_to_scores(self.encode_decode(inputs, []), dim=1)

    @staticmethod
    def logits_to_scores(logits: Tensor, dim: int = 0) -> Tensor:
        """Palette logits are minus scaled colour distances: their softmax over classes is the probability."""
        return logits.softmax(dim)

    def cost_per_view(self, num_windows: int = 1) -> Dict[str, int]:
        """U-Net passes, VAE decodes and encodes per image and view: flat in the vocabulary."""
        cfg = self.test_cfg
        return dict(unet=num_windows * cfg['ensemble_size'] * cfg['num_steps'], decodes=num_windows, readouts=0,
                    encodes=num_windows)
