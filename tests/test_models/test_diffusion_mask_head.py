import copy

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel

from mmseg_digseg.models.decode_heads import DiffusionMaskHead, add_text_class_embedding, widen_conv_in
from ..conftest import tiny_unet_cfg


def unet4_cfg():
    """The tiny U-Net for 4-channel latents (SD's), as these tests use."""
    return dict(tiny_unet_cfg(), in_channels=4, out_channels=4)

SCHEDULER_CFG = dict(num_train_timesteps=1000, beta_schedule='scaled_linear', beta_start=0.00085,
                     beta_end=0.012, prediction_type='v_prediction', rescale_betas_zero_snr=True,
                     timestep_spacing='trailing', clip_sample=False)


def make_head(**kwargs):
    torch.manual_seed(0)
    cfg = dict(unet_cfg=unet4_cfg(), scheduler_cfg=SCHEDULER_CFG, latent_channels=4, text_token_dim=64,
               text_embed_dim=64)
    cfg.update(kwargs)
    return DiffusionMaskHead(**cfg)


def unet_inputs(batch=2):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 4, 16, 16, generator=g)
    t = torch.tensor([10, 700][:batch])
    ctx = torch.randn(batch, 5, 64, generator=g)
    return x, t, ctx


def test_widen_conv_in_keeps_pretrained_output():
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**unet4_cfg()).eval()
    x, t, ctx = unet_inputs()
    with torch.no_grad():
        reference = unet(x, t, encoder_hidden_states=ctx).sample
        widened = copy.deepcopy(unet)
        widen_conv_in(widened, 8)
        assert widened.conv_in.in_channels == 8 and widened.config.in_channels == 8
        torch.testing.assert_close(widened.conv_in.bias, unet.conv_in.bias)
        # the same latent in both groups reproduces the original response ...
        same = widened(torch.cat([x, x], 1), t, encoder_hidden_states=ctx).sample
        # ... and with the extra channels at zero, up to the 0.5 factor
        zeros = widened(torch.cat([2 * x, torch.zeros_like(x)], 1), t, encoder_hidden_states=ctx).sample
    torch.testing.assert_close(same, reference, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(zeros, reference, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(widened(torch.cat([x, torch.zeros_like(x)], 1), t, encoder_hidden_states=ctx).sample,
                              reference, atol=1e-3)


def test_text_class_embedding_starts_as_identity():
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**unet4_cfg()).eval()
    x, t, ctx = unet_inputs()
    with torch.no_grad():
        reference = unet(x, t, encoder_hidden_states=ctx).sample
        add_text_class_embedding(unet, 32)
        out = unet(x, t, encoder_hidden_states=ctx, class_labels=torch.randn(2, 32)).sample
    torch.testing.assert_close(out, reference)
    assert unet.config.class_embed_type == 'projection'
    assert unet.config.projection_class_embeddings_input_dim == 32


@pytest.mark.parametrize('prediction_type', ['v_prediction', 'epsilon', 'sample'])
def test_training_target_matches_diffusers(prediction_type):
    zero_snr = prediction_type != 'epsilon'
    head = make_head(scheduler_cfg=dict(SCHEDULER_CFG, prediction_type=prediction_type,
                                        rescale_betas_zero_snr=zero_snr))
    reference = DDPMScheduler(**dict(SCHEDULER_CFG, prediction_type=prediction_type,
                                     rescale_betas_zero_snr=zero_snr))
    g = torch.Generator().manual_seed(1)
    clean, noise = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    t = torch.tensor([0, 421, 998])
    target = head.training_target(clean, noise, t)
    alpha_bar = reference.alphas_cumprod[t].view(-1, 1, 1, 1)
    expected = {
        'epsilon': noise,
        'v_prediction': alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * clean,
        'sample': clean
    }[prediction_type]
    torch.testing.assert_close(target, expected)
    if prediction_type == 'v_prediction':
        torch.testing.assert_close(target, reference.get_velocity(clean, noise, t))
    # the prediction -> clean-latent formula inverts the forward process
    noisy = reference.add_noise(clean, noise, t)
    torch.testing.assert_close(head.predicted_clean(target, noisy, t), clean, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('steps,expected', [(1, [999]), (2, [999, 499]), (4, [999, 749, 499, 249])])
def test_trailing_timesteps_match_diffusers(steps, expected):
    head = make_head()
    head.infer_scheduler.set_timesteps(steps)
    reference = DDIMScheduler(**SCHEDULER_CFG)
    reference.set_timesteps(steps)
    assert head.infer_scheduler.timesteps.tolist() == reference.timesteps.tolist() == expected


def test_zero_snr_makes_last_step_pure_noise():
    head = make_head()
    assert head.alphas_cumprod[-1].item() == pytest.approx(0.0, abs=1e-12)


def test_one_step_sampling_from_zeros_equals_single_step_training_path():
    head = make_head().eval()
    g = torch.Generator().manual_seed(2)
    image = torch.randn(3, 4, 16, 16, generator=g)
    tokens, pooled = torch.randn(3, 16, 64, generator=g), torch.randn(3, 64, generator=g)
    with torch.no_grad():
        sampled = head.sample(image, tokens, pooled, torch.zeros(3, 4, 16, 16), num_steps=1)
        direct = head.single_step(image, tokens, pooled)
    torch.testing.assert_close(sampled, direct, atol=1e-5, rtol=1e-4)


def test_text_changes_the_prediction_after_training_signal():
    head = make_head().eval()
    with torch.no_grad():
        head.unet.class_embedding.linear_2.weight.normal_()  # as after some training
        x, t, _ = unet_inputs()
        image = torch.randn(2, 4, 16, 16)
        tok = torch.randn(1, 16, 64).expand(2, -1, -1)
        pooled = torch.stack([torch.randn(64), torch.randn(64)])
        out = head(x[:1].expand(2, -1, -1, -1), image[:1].expand(2, -1, -1, -1), t[:1].expand(2), tok, pooled)
    assert not torch.allclose(out[0], out[1], atol=1e-4)


def test_epsilon_with_zero_snr_is_rejected():
    with pytest.raises(ValueError, match='v_prediction'):
        make_head(scheduler_cfg=dict(SCHEDULER_CFG, prediction_type='epsilon'))


def test_needs_exactly_one_unet_source():
    with pytest.raises(ValueError, match='exactly one'):
        DiffusionMaskHead(scheduler_cfg=SCHEDULER_CFG)


def test_loads_unet_and_scheduler_from_sd_directory(tiny_sd_dir):
    """The directory holds SD 2.1-base's own PNDMScheduler file, which lacks timestep_spacing and
    rescale_betas_zero_snr: the config's overrides of those keys must still win (diffusers lists missing
    keys in `_use_default_values` and would reset them to their defaults)."""
    head = DiffusionMaskHead(pretrained=tiny_sd_dir, scheduler_cfg=dict(prediction_type='v_prediction',
                                                                        rescale_betas_zero_snr=True,
                                                                        timestep_spacing='trailing'),
                             latent_channels=16, text_token_dim=64, text_embed_dim=64)  # the tiny VAE's
    saved = UNet2DConditionModel.from_pretrained(tiny_sd_dir, subfolder='unet')
    torch.testing.assert_close(head.unet.conv_in.weight[:, 16:], saved.conv_in.weight / 2)
    assert head.train_scheduler.config.beta_schedule == 'scaled_linear'  # from the directory
    assert head.prediction_type == 'v_prediction'  # overridden
    for scheduler in (head.train_scheduler, head.infer_scheduler):
        assert scheduler.config.rescale_betas_zero_snr and scheduler.config.timestep_spacing == 'trailing'
    assert head.train_scheduler.alphas_cumprod[-1] == 0  # zero terminal SNR, not SD's 0.0047
    scheduler = head.inference_scheduler()
    scheduler.set_timesteps(1)
    assert scheduler.timesteps.tolist() == [999]  # one step starts from pure noise (leading: t=1)
    scheduler.set_timesteps(2)
    assert scheduler.timesteps.tolist() == [999, 499]


PAPER_LITERAL = ['model.decode_head.scheduler_cfg.prediction_type=epsilon',
                 'model.decode_head.scheduler_cfg.rescale_betas_zero_snr=False', 'model.train_cfg.timestep_range=None']


@pytest.mark.parametrize('literal', [False, True])
def test_paper_configs_schedule_and_the_papers_literal_one_line_away(tiny_sd_dir, literal):
    """The paper configs' default: v-prediction on SD's betas rescaled to zero terminal SNR, training timesteps
    in [900, 1000), trailing DDIM. The line in the config's comment gives the paper's literal recipe: noise
    prediction on SD 2.1-base's own betas (final alpha_bar 0.0047), all timesteps."""
    from mmengine.config import Config, DictAction
    from ..conftest import REPO_ROOT
    model = Config.fromfile(f'{REPO_ROOT}/configs/_base_/models/digseg_sd21_vitl.py')
    if literal:
        model.merge_from_dict({k: DictAction._parse_iterable(v) for k, v in (o.split('=', 1) for o in PAPER_LITERAL)})
    cfg = model.model.decode_head
    head = DiffusionMaskHead(pretrained=tiny_sd_dir, scheduler_cfg=cfg.scheduler_cfg, latent_channels=16,
                             text_token_dim=64, text_embed_dim=64)
    assert head.prediction_type == ('epsilon' if literal else 'v_prediction')
    assert head.train_scheduler.config.rescale_betas_zero_snr is not literal
    timestep_range = model.model.train_cfg.timestep_range
    assert (timestep_range and tuple(timestep_range)) == (None if literal else (900, 1000))
    reference = DDPMScheduler(beta_schedule='scaled_linear', beta_start=0.00085, beta_end=0.012)
    final = head.train_scheduler.alphas_cumprod[-1].item()
    if literal:
        torch.testing.assert_close(head.train_scheduler.alphas_cumprod, reference.alphas_cumprod)
        assert abs(final - 0.0047) < 1e-4
    else:  # the same betas, rescaled: x_T holds no mask
        assert final < 1e-8 and abs(head.train_scheduler.alphas_cumprod[0].item() - 0.99915) < 1e-4
    scheduler = head.inference_scheduler()
    scheduler.set_timesteps(1)
    assert scheduler.timesteps.tolist() == [999]
    clean, noise, t = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8), torch.tensor([3, 900])
    a = head.train_scheduler.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1)
    s = (1 - head.train_scheduler.alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1)
    expected = noise if literal else a * noise - s * clean  # MSE to epsilon, or to v
    torch.testing.assert_close(head.training_target(clean, noise, t), expected)


def test_ignored_pixels_do_not_enter_the_denoising_loss():
    """Half of each mask is ignore (255 / crop padding): its latent pixels carry no weight. The loss is
    the MSE over the valid half, computed by hand, and no gradient flows from the ignored half."""
    head = make_head()
    g = torch.Generator().manual_seed(0)
    image, mask = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 4, 16, 16, generator=g)
    tokens, pooled = torch.randn(2, 5, 64, generator=g), torch.randn(2, 64, generator=g)
    valid = torch.ones(2, 1, 16, 16)
    valid[..., 8:] = 0
    outputs = []

    def keep_output(module, args, out):
        out.sample.retain_grad()
        outputs.append(out.sample)

    head.unet.register_forward_hook(keep_output)
    torch.manual_seed(1)
    loss = head.loss_denoising(image, mask, tokens, pooled, valid)['loss_denoise']
    loss.backward()
    [prediction] = outputs
    assert prediction.grad[..., 8:].abs().max() == 0 and prediction.grad[..., :8].abs().min() > 0
    torch.manual_seed(1)  # the same noise and timesteps, by hand
    noise = torch.randn_like(mask)
    t = torch.randint(0, 1000, (2, ))
    target = head.training_target(mask, noise, t)
    torch.testing.assert_close(loss.detach(), ((prediction.detach() - target)[..., :8]**2).mean())
    # all valid: plain MSE
    torch.manual_seed(1)
    outputs.clear()
    loss = head.loss_denoising(image, mask, tokens, pooled, torch.ones_like(valid))['loss_denoise']
    torch.testing.assert_close(loss.detach(), ((outputs[0].detach() - target)**2).mean())


@pytest.mark.parametrize('share', [1.0, 0.5])
def test_training_timesteps_come_from_the_range_for_its_share_of_pairs(share):
    """timestep_range=(900, 1000) for a share of the pairs, all timesteps for the rest: of 2,000 pairs, a
    share of 0.5 puts about 0.5 + 0.5 * 0.1 = 55 % at t >= 900 and spreads the rest evenly below."""
    head = make_head()
    seen = []
    head.unet.register_forward_pre_hook(lambda module, args: seen.append(args[1].clone()))
    n = 2000
    image, mask = torch.zeros(n, 4, 8, 8), torch.zeros(n, 4, 8, 8)
    torch.manual_seed(0)
    with torch.no_grad():
        head.denoising_step(image, mask, torch.zeros(n, 5, 64), torch.zeros(n, 64), timestep_range=(900, 1000),
                            range_share=share)
    [t] = seen
    high = (t >= 900).float().mean().item()
    if share == 1.0:
        assert t.min() >= 900 and t.max() <= 999
    else:
        assert 0.51 < high < 0.59
        low = t[t < 900]
        assert low.min() < 100 and (low < 450).float().mean().item() == pytest.approx(0.5, abs=0.06)


def test_unet_latent_channels_must_match_the_vae():
    with pytest.raises(ValueError, match='unet_cfg in_channels and out_channels to 16'):
        make_head(latent_channels=16)


def test_missing_weights_path_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'unet/config.json does not exist.*`model.decode_head.pretrained`.*hf download'):
        DiffusionMaskHead(pretrained=str(tmp_path / 'nowhere'))


def test_unknown_scheduler_keys_are_refused():
    """diffusers only logs unknown scheduler settings; a typo would silently keep the default."""
    with pytest.raises(ValueError, match=r"Unknown key\(s\) \['prediction'\] in model.decode_head.scheduler_cfg.*"
                                         r"'prediction_type'"):
        make_head(scheduler_cfg=dict(SCHEDULER_CFG, prediction='epsilon'))
    make_head(scheduler_cfg=dict(SCHEDULER_CFG, set_alpha_to_one=True, steps_offset=1))  # DDIM's own keys


def test_sampling_step_runs_in_fp32_under_half_precision():
    """Epsilon prediction at t=T: x0 = (x_t - sqrt(1 - a) eps) / sqrt(a) multiplies rounding by ~15, so only
    the U-Net runs in bf16; the DDIM step, and the start noise, stay fp32."""
    eps_cfg = dict(SCHEDULER_CFG, prediction_type='epsilon', rescale_betas_zero_snr=False)
    head = make_head(scheduler_cfg=eps_cfg).eval()
    g = torch.Generator().manual_seed(3)
    image = torch.randn(2, 4, 16, 16, generator=g)
    tokens, pooled = torch.randn(2, 16, 64, generator=g), torch.randn(2, 64, generator=g)
    noise = torch.randn(2, 4, 16, 16, generator=g)
    eps = []
    head.unet.register_forward_hook(lambda mod, args, out: eps.append(out.sample))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        x0 = head.sample(image.bfloat16(), tokens, pooled, noise, num_steps=1)
    assert eps[0].dtype == torch.bfloat16 and x0.dtype == torch.float32
    # by hand, in float64, from the U-Net's own bf16 output and the fp32 noise at t = 999
    a = DDPMScheduler(**{k: v for k, v in eps_cfg.items() if k != 'timestep_spacing'}).alphas_cumprod.double()[999]
    expected = (noise.double() - (1 - a).sqrt() * eps[0].double()) / a.sqrt()
    torch.testing.assert_close(x0.double(), expected, atol=1e-4, rtol=1e-4)


def test_cross_class_ce_compares_the_drawn_classes_of_each_image():
    """Image 0 drew classes 2 and 0, image 1 only class 1. A pixel counts where its label is one of its image's
    drawn classes; the expected value is written out with numpy: a two-way softmax is a sigmoid of the logit
    difference, and a one-class softmax costs nothing."""
    import numpy as np
    from mmseg_digseg.models.decode_heads.diffusion_mask_head import cross_class_ce
    probs = torch.tensor([[[0.9, 0.2, 0.5]], [[0.3, 0.6, 0.5]], [[0.7, 0.4, 0.5]]], dtype=torch.float64)
    labels = torch.tensor([[[2, 0, 5]], [[1, 255, 3]]])  # 5 and 3: not drawn; 255: ignored
    img_idx, cls_idx = torch.tensor([0, 0, 1]), torch.tensor([2, 0, 1])

    def logit(p):
        return np.log(p / (1 - p))

    def nll(own, other):  # -log softmax([own, other])[0]
        return np.log1p(np.exp(logit(other) - logit(own)))

    expected = (nll(0.9, 0.3) + nll(0.6, 0.2) + 0.0) / 3
    assert float(cross_class_ce(probs, labels, img_idx, cls_idx, 255)) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize('heads', [1, 2])
def test_cross_attention_logits_are_the_layers_own(heads):
    """The recorder leaves a cross-attention layer's output as it was, and what it records is the layer's
    attention: with one head, softmax(logits) @ values through the output projection is the layer's output;
    with two, the mean of the heads' logits written out by hand."""
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0
    from mmseg_digseg.models.decode_heads.diffusion_mask_head import CrossAttentionLogits
    torch.manual_seed(0)
    attn = Attention(query_dim=8, cross_attention_dim=6, heads=heads, dim_head=8 // heads).eval()
    pixels, tokens = torch.randn(2, 9, 8), torch.randn(2, 4, 6)
    plain = AttnProcessor2_0()
    recorder = CrossAttentionLogits(plain)
    recorder.recording = []
    with torch.no_grad():
        out = recorder(attn, pixels, tokens)
        torch.testing.assert_close(out, plain(attn, pixels, tokens))
        [logits] = recorder.recording
        assert logits.shape == (2, 9, 4)
        q = attn.to_q(pixels).view(2, 9, heads, 8 // heads)
        k = attn.to_k(tokens).view(2, 4, heads, 8 // heads)
        by_hand = torch.einsum('bphd,bthd->bpt', q, k) / (8 // heads)**0.5 / heads
        torch.testing.assert_close(logits, by_hand)
        if heads == 1:
            torch.testing.assert_close(attn.to_out[0](logits.softmax(-1) @ attn.to_v(tokens)), out)


def test_recording_cross_attention_collects_every_cross_attention_layer_and_restores():
    head = make_head().eval()
    x, t, ctx = unet_inputs()
    image = torch.randn(2, 4, 16, 16)
    pooled = torch.randn(2, 64)
    with torch.no_grad():
        before = head(x, image, t, ctx, pooled)
        with head.recording_cross_attention() as logits:
            during = head(x, image, t, ctx, pooled)
        after = head(x, image, t, ctx, pooled)
    torch.testing.assert_close(during, before)
    torch.testing.assert_close(after, before)
    # the tiny U-Net: 2 cross-attention down blocks (1 layer each), the middle block, 2 up blocks (2 layers each)
    assert [tuple(r.shape) for r in logits] == [(2, 256, 5), (2, 64, 5), (2, 16, 5), (2, 64, 5), (2, 64, 5),
                                                (2, 256, 5), (2, 256, 5)]
    assert not any(type(p).__name__ == 'CrossAttentionLogits' for p in head.unet.attn_processors.values())
