"""The text-conditioned denoising U-Net that turns an image latent and a class prompt into a mask latent."""
import inspect
import warnings
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from diffusers.models.embeddings import TimestepEmbedding
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmseg.registry import MODELS
from ..utils import load_diffusers_part


def widen_conv_in(unet: UNet2DConditionModel, in_channels: int) -> None:
    """Widen ``conv_in`` to take [image latent, noisy mask latent] (Marigold's recipe).

    The pretrained kernel is repeated over the new input groups and scaled so that the sum over the
    groups equals the original response: with the same latent in every group the output is unchanged.
    The bias is kept. ``in_channels`` is written to the U-Net config so that it is saved with it.
    """
    old = unet.conv_in
    if old.in_channels == in_channels:
        return
    if in_channels % old.in_channels:
        raise ValueError(f'Cannot widen conv_in from {old.in_channels} to {in_channels} input channels.')
    repeats = in_channels // old.in_channels
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding)
    with torch.no_grad():
        new.weight.copy_(old.weight.repeat(1, repeats, 1, 1) / repeats)
        new.bias.copy_(old.bias)
    unet.conv_in = new.to(old.weight.device, old.weight.dtype)
    unet.register_to_config(in_channels=in_channels)


def add_text_class_embedding(unet: UNet2DConditionModel, embed_dim: int) -> None:
    """Feed the pooled prompt embedding through the U-Net's class-embedding path.

    It is added to the timestep embedding, which modulates every ResNet block at every resolution.
    The last layer starts at zero, so a pretrained U-Net starts out unchanged.
    """
    if unet.class_embedding is not None:
        return  # already there (e.g. a U-Net saved by DiGSeg)
    time_embed_dim = unet.time_embedding.linear_2.out_features
    embedding = TimestepEmbedding(embed_dim, time_embed_dim)
    nn.init.zeros_(embedding.linear_2.weight)
    nn.init.zeros_(embedding.linear_2.bias)
    unet.class_embedding = embedding.to(unet.device, unet.dtype)
    unet.register_to_config(class_embed_type='projection', projection_class_embeddings_input_dim=embed_dim)


def scheduler_settings(config) -> dict:
    """A loaded scheduler config as plain settings, without diffusers' private keys.

    A config file that lacks a key (SD 2.1-base's ``PNDMScheduler`` file has no ``timestep_spacing`` or
    ``rescale_betas_zero_snr``) loads with that key listed in ``_use_default_values``, and ``from_config``
    then replaces the key by its default even when the caller set it: the overrides would be silently
    dropped. Without the private keys, every setting given wins.
    """
    return {k: v for k, v in dict(config).items() if not k.startswith('_')}


def scheduler_keys() -> set:
    """The settings a training (DDPM) or sampling (DDIM) scheduler takes."""
    return {name for cls in (DDPMScheduler, DDIMScheduler)
            for name in inspect.signature(cls.__init__).parameters if name not in ('self', 'kwargs')}


class CrossAttentionLogits:
    """Wraps a cross-attention layer's attention processor: the layer computes what it did before, and while
    ``recording`` is a list, the layer's attention logits (query . key x scale, the mean over heads: (B, pixels,
    prompt tokens)) are appended to it, so that a loss can say which token each pixel should read."""

    def __init__(self, processor):
        self.processor, self.recording = processor, None

    def __call__(self, attn, hidden_states: Tensor, encoder_hidden_states: Optional[Tensor] = None, *args, **kwargs):
        if self.recording is not None and encoder_hidden_states is not None:
            query = attn.head_to_batch_dim(attn.to_q(hidden_states))  # (B x heads, pixels, head width)
            key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
            logits = torch.bmm(query, key.transpose(1, 2)) * attn.scale
            self.recording.append(logits.view(-1, attn.heads, *logits.shape[1:]).float().mean(1))
        return self.processor(attn, hidden_states, encoder_hidden_states, *args, **kwargs)


def masked_mse(prediction: Tensor, target: Tensor, weight: Optional[Tensor]) -> Tensor:
    """Mean squared error over latent pixels weighted by ``weight`` (N, 1, h, w), the fraction of valid
    (not ignored) image pixels under each latent pixel; plain MSE without it."""
    error = (prediction.float() - target.float())**2
    if weight is None:
        return error.mean()
    weight = weight.to(error.dtype)
    return (error * weight).sum() / (weight.sum() * error.shape[1]).clamp(min=1)


def dice_loss(probs: Tensor, target: Tensor, valid: Tensor, eps: float = 1.0) -> Tensor:
    probs, target = probs * valid, target * valid
    inter = (probs * target).flatten(1).sum(1)
    union = probs.flatten(1).sum(1) + target.flatten(1).sum(1)
    return (1 - (2 * inter + eps) / (union + eps)).mean()



def decoded_probs(decode_masks: Callable[[Tensor], Tensor], latents: Tensor) -> Tensor:
    """Mask latents -> per-pixel scores through the VAE decoder, kept off 0 and 1 so that their logs (BCE,
    logits) stay finite; with autograd when it is on."""
    return ((decode_masks(latents) + 1) / 2).clamp(1e-4, 1 - 1e-4)


def cross_class_ce(probs: Tensor, labels: Tensor, img_idx: Tensor, cls_idx: Tensor,
                   ignore_index: int = 255) -> Tensor:
    """Per-pixel cross-entropy across the classes drawn for each image, on logit(score): which of them
    scores highest, as inference's argmax asks. ``probs`` (N, H, W) are the scores of the (image, class)
    pairs ``img_idx``, ``cls_idx``; ``labels`` (B, H, W). A pixel counts where its label is one of its
    image's drawn classes; with every class drawn, that is every pixel not ignored."""
    logits = probs.log() - (1 - probs).log()
    total, count = logits.new_zeros(()), 0
    for b in img_idx.unique().tolist():
        pairs = (img_idx == b).nonzero()[:, 0]
        target = torch.full_like(labels[b], ignore_index)
        for k, c in enumerate(cls_idx[pairs].tolist()):
            target[labels[b] == c] = k
        total = total + F.cross_entropy(logits[pairs][None], target[None], ignore_index=ignore_index,
                                        reduction='sum')
        count += int((target != ignore_index).sum())
    return total / max(count, 1)

@MODELS.register_module()
class DiffusionMaskHead(BaseModule):
    """Denoising U-Net conditioned on the image latent (channels) and the class prompt (text pathway).

    Text pathway, parallel to the image path and reaching every scale:
    - the prompt's token features, projected to the cross-attention width, feed every
      cross-attention layer;
    - the pooled CLIP embedding goes through the class-embedding path into every ResNet block.

    Args:
        pretrained (str, optional): hub id or Stable Diffusion directory; the U-Net is read from
            ``subfolder='unet'`` and the noise schedule from ``'scheduler'``.
        unet_cfg (dict, optional): build a fresh ``UNet2DConditionModel`` from this config instead.
        scheduler_cfg (dict): overrides of the noise schedule (e.g. ``prediction_type``,
            ``rescale_betas_zero_snr``, ``timestep_spacing``); without ``pretrained``, the full config.
        latent_channels, text_token_dim, text_embed_dim (int): set by the segmentor from the VAE and
            the text encoder.
        gradient_checkpointing (bool): trade compute for U-Net activation memory.
        threshold (float): score threshold for a single-class (binary) vocabulary.
    """

    def __init__(self,
                 pretrained: Optional[str] = None,
                 unet_cfg: Optional[dict] = None,
                 scheduler_cfg: Optional[dict] = None,
                 latent_channels: int = 4,
                 text_token_dim: int = 768,
                 text_embed_dim: int = 768,
                 gradient_checkpointing: bool = False,
                 threshold: float = 0.5,
                 init_cfg=None):
        super().__init__(init_cfg)
        if (pretrained is None) == (unet_cfg is None):
            raise ValueError('DiffusionMaskHead needs exactly one of `pretrained` (a Stable Diffusion '
                             'directory or hub id) and `unet_cfg` (a UNet2DConditionModel config).')
        scheduler_cfg = dict(scheduler_cfg or {})
        unknown = sorted(set(scheduler_cfg) - scheduler_keys())  # diffusers would only log a warning
        if unknown:
            raise ValueError(f'Unknown key(s) {unknown} in model.decode_head.scheduler_cfg; valid keys: '
                             f'{sorted(scheduler_keys())}.')
        if pretrained is not None:
            self.unet = load_diffusers_part(UNet2DConditionModel, pretrained, 'unet',
                                            'model.decode_head.pretrained')
            base = load_diffusers_part(DDPMScheduler, pretrained, 'scheduler',
                                       'model.decode_head.pretrained').config
            scheduler_cfg = {**scheduler_settings(base), **scheduler_cfg}
        else:
            self.unet = UNet2DConditionModel(**unet_cfg)
        self.threshold = threshold
        self.latent_channels = latent_channels
        if self.unet.config.out_channels != latent_channels:
            raise ValueError(f'The U-Net predicts {self.unet.config.out_channels} latent channels but the VAE\'s '
                             f'latents have {latent_channels}: set decode_head.unet_cfg in_channels and '
                             f'out_channels to {latent_channels} (or use a VAE with matching latents).')
        widen_conv_in(self.unet, 2 * latent_channels)
        add_text_class_embedding(self.unet, text_embed_dim)
        cross_dim = self.unet.config.cross_attention_dim
        self.text_proj = nn.Linear(text_token_dim, cross_dim)
        if text_token_dim == cross_dim:  # e.g. the CLIP the U-Net was trained with: pass it unchanged
            nn.init.eye_(self.text_proj.weight)
            nn.init.zeros_(self.text_proj.bias)
        if gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()

        self.train_scheduler = DDPMScheduler.from_config(scheduler_cfg)
        # the last DDIM step lands on the clean estimate itself
        self.infer_scheduler = DDIMScheduler.from_config(scheduler_cfg, set_alpha_to_one=True)
        cfg = self.train_scheduler.config
        self.prediction_type = cfg.prediction_type
        if cfg.rescale_betas_zero_snr and self.prediction_type == 'epsilon':
            raise ValueError('Zero-terminal-SNR betas make epsilon prediction undefined at t=T: set '
                             "scheduler_cfg.prediction_type='v_prediction' or rescale_betas_zero_snr=False.")
        if self.infer_scheduler.config.timestep_spacing != 'trailing':
            warnings.warn('DDIM timestep spacing is not "trailing": few-step sampling then never starts at '
                          't=T and loses accuracy (the paper\'s "w/o trailing" row).')
        self.register_buffer('alphas_cumprod', self.train_scheduler.alphas_cumprod.clone(), persistent=False)

    def init_weights(self):
        pass  # pretrained or freshly built with diffusers' own init; new layers are set in __init__

    @property
    def num_train_timesteps(self) -> int:
        return self.train_scheduler.config.num_train_timesteps

    def forward(self, noisy_latents: Tensor, image_latents: Tensor, timesteps: Tensor, text_tokens: Tensor,
                text_pooled: Tensor) -> Tensor:
        """One U-Net evaluation: returns the scheduler's prediction (epsilon, v or sample)."""
        sample = torch.cat([image_latents, noisy_latents.to(image_latents.dtype)], dim=1)
        return self.unet(
            sample,
            timesteps,
            encoder_hidden_states=self.text_proj(text_tokens.to(sample.dtype)),
            class_labels=text_pooled.to(sample.dtype)).sample

    @contextmanager
    def recording_cross_attention(self) -> Iterator[List[Tensor]]:
        """Within the block, the attention logits of every cross-attention layer the U-Net runs are collected
        in the list it yields ((B, pixels, prompt tokens) each, in the order the layers run)."""
        processors = self.unet.attn_processors
        recorded: List[Tensor] = []
        wrapped = {name: CrossAttentionLogits(p) if name.endswith('attn2.processor') else p
                   for name, p in processors.items()}
        for p in wrapped.values():
            if isinstance(p, CrossAttentionLogits):
                p.recording = recorded
        self.unet.set_attn_processor(wrapped)
        try:
            yield recorded
        finally:
            self.unet.set_attn_processor(processors)

    def training_target(self, clean: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        if self.prediction_type == 'epsilon':
            return noise
        if self.prediction_type == 'v_prediction':
            return self.train_scheduler.get_velocity(clean, noise, timesteps)
        return clean  # 'sample'

    def predicted_clean(self, prediction: Tensor, noisy: Tensor, timesteps: Tensor) -> Tensor:
        """The clean latent implied by a prediction at ``timesteps`` (differentiable)."""
        alpha_bar = self.alphas_cumprod[timesteps].view(-1, 1, 1, 1).to(prediction.dtype)
        a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        if self.prediction_type == 'epsilon':
            return (noisy - s * prediction) / a
        if self.prediction_type == 'v_prediction':
            return a * noisy - s * prediction
        return prediction

    def denoising_step(self, image_latents: Tensor, mask_latents: Tensor, text_tokens: Tensor, text_pooled: Tensor,
                       timestep_range: Optional[tuple] = None,
                       range_share: float = 1.0) -> Tuple[Tensor, Tensor, Tensor]:
        """Noise the mask latents at random timesteps and predict: (prediction, the scheduler's target for
        it, the clean latent the prediction implies). The clean estimate is what sampling ends on, so the
        learned readout trains on it. Timesteps: from ``timestep_range`` (default all) for a share
        ``range_share`` of the pairs, from all timesteps for the rest."""
        low, high = timestep_range or (0, self.num_train_timesteps)
        noise = torch.randn_like(mask_latents)
        num, device = mask_latents.shape[0], mask_latents.device
        timesteps = torch.randint(low, high, (num, ), device=device)
        if range_share < 1:
            anywhere = torch.rand(num, device=device) >= range_share
            timesteps[anywhere] = torch.randint(0, self.num_train_timesteps, (int(anywhere.sum()), ), device=device)
        noisy = self.train_scheduler.add_noise(mask_latents, noise, timesteps)
        prediction = self(noisy, image_latents, timesteps, text_tokens, text_pooled)
        target = self.training_target(mask_latents, noise, timesteps)
        return prediction, target, self.predicted_clean(prediction.float(), noisy.float(), timesteps)

    def loss_denoising(self, image_latents: Tensor, mask_latents: Tensor, text_tokens: Tensor,
                       text_pooled: Tensor, latent_valid: Optional[Tensor] = None,
                       timestep_range: Optional[tuple] = None, range_share: float = 1.0) -> Dict[str, Tensor]:
        """The diffusion objective: MSE to the scheduler's own target at a random timestep, over the
        latent pixels of valid image pixels (``latent_valid``: weight of each, (N, 1, h, w))."""
        prediction, target, _ = self.denoising_step(image_latents, mask_latents, text_tokens, text_pooled,
                                                    timestep_range, range_share)
        return dict(loss_denoise=masked_mse(prediction, target, latent_valid))

    def single_step(self, image_latents: Tensor, text_tokens: Tensor, text_pooled: Tensor) -> Tensor:
        """Deterministic one-step prediction of the clean mask latent: t=T, zero noise (E2E-FT)."""
        timesteps = torch.full((image_latents.shape[0], ),
                               self.num_train_timesteps - 1,
                               device=image_latents.device,
                               dtype=torch.long)
        noisy = torch.zeros_like(image_latents[:, :self.latent_channels])
        prediction = self(noisy, image_latents, timesteps, text_tokens, text_pooled)
        return self.predicted_clean(prediction, noisy, timesteps)

    def loss_single_step(self, image_latents: Tensor, mask_latents: Optional[Tensor], text_tokens: Tensor,
                         text_pooled: Tensor, latent_valid: Optional[Tensor], masks: Tensor, valid: Tensor,
                         decode_masks: Callable[[Tensor], Tensor], loss_weights: dict,
                         ce_pairs: Optional[Tuple[Tensor, Tensor, Tensor]] = None,
                         ignore_index: int = 255) -> Dict[str, Tensor]:
        """End-to-end single-step objective: BCE + Dice on the mask decoded by the frozen VAE."""
        clean = self.single_step(image_latents, text_tokens, text_pooled)
        return self.single_step_losses(clean, mask_latents, latent_valid, masks, valid, decode_masks, loss_weights,
                                       ce_pairs, ignore_index)

    def single_step_losses(self, clean: Tensor, mask_latents: Optional[Tensor], latent_valid: Optional[Tensor],
                           masks: Tensor, valid: Tensor, decode_masks: Callable[[Tensor], Tensor],
                           loss_weights: dict, ce_pairs: Optional[Tuple[Tensor, Tensor, Tensor]] = None,
                           ignore_index: int = 255) -> Dict[str, Tensor]:
        """The losses of ``loss_single_step`` on a predicted clean latent (N, C, h, w).

        With ``ce_pairs`` = (labels (B, H, W), image index, class index of each pair) a per-pixel
        cross-entropy across each image's drawn classes (``cross_class_ce``) teaches the U-Net what
        inference's argmax asks: which class is highest, not only whether each one is present."""
        probs = decoded_probs(decode_masks, clean)
        target, valid = masks.float(), valid.float()
        # written out rather than F.binary_cross_entropy, which raises on NaN: a NaN must reach the
        # loss so that CheckFiniteLossHook can stop training with the iteration number
        bce = -(target * probs.log() + (1 - target) * (1 - probs).log())
        bce = (bce * valid).sum() / valid.sum().clamp(min=1)
        losses = dict(loss_bce=loss_weights.get('bce', 1.0) * bce,
                      loss_dice=loss_weights.get('dice', 1.0) * dice_loss(probs, target, valid))
        if loss_weights.get('latent', 0):
            losses['loss_latent'] = loss_weights['latent'] * masked_mse(clean, mask_latents, latent_valid)
        if ce_pairs is not None:
            losses['loss_ce'] = loss_weights['ce'] * cross_class_ce(probs, *ce_pairs, ignore_index)
        return losses

    def inference_scheduler(self, timestep_spacing: Optional[str] = None) -> DDIMScheduler:
        if timestep_spacing in (None, self.infer_scheduler.config.timestep_spacing):
            return self.infer_scheduler
        return DDIMScheduler.from_config(self.infer_scheduler.config, timestep_spacing=timestep_spacing)

    @torch.no_grad()
    def sample(self, image_latents: Tensor, text_tokens: Tensor, text_pooled: Tensor, init_latents: Tensor,
               num_steps: int, timestep_spacing: Optional[str] = None) -> Tensor:
        """DDIM from ``init_latents`` (at t=T with trailing spacing) down to the clean mask latent (fp32).

        Under half-precision autocast only the U-Net runs in half: the scheduler's step stays fp32, since
        at t=T with epsilon prediction x0 = (x_t - 0.998 eps) / 0.069 multiplies any rounding by about 15.
        """
        scheduler = self.inference_scheduler(timestep_spacing)
        scheduler.set_timesteps(num_steps, device=image_latents.device)
        latents = init_latents.float()
        for t in scheduler.timesteps:
            timesteps = t.expand(latents.shape[0])
            prediction = self(latents, image_latents, timesteps, text_tokens, text_pooled)
            latents = scheduler.step(prediction.float(), t, latents).prev_sample
        return latents
