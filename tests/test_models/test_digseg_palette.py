"""Palette mode: painting, nearest-colour decoding, colour binding, losses and cost flat in the vocabulary."""
import copy
import os.path as osp

import pytest
import torch

from mmseg_digseg.models.segmentors.digseg_palette import (attention_binding_loss, colour_distance_logits,
                                                           min_colour_distance, paint, palette_colours)
from ..conftest import REPO_ROOT
from .test_digseg import make_batch

PALETTE_CONFIG = osp.join(REPO_ROOT, 'configs/digseg/digseg-palette_tiny_synth-shapes-64.py')
CLASSES = ['background', 'disc', 'square', 'triangle', 'cross', 'ring']


@pytest.fixture
def palette_cfg(tiny_cfg):
    from mmengine.config import Config
    cfg = Config.fromfile(PALETTE_CONFIG)
    cfg.train_dataloader.dataset.data_root = tiny_cfg.train_dataloader.dataset.data_root
    return cfg


def build(cfg, **changes):
    from mmseg.registry import MODELS
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.update(changes)
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.class_names = CLASSES
    return model


def build_with_train_cfg(cfg, train_cfg):
    """``build`` with ``train_cfg`` replacing the config's (``build`` merges into it)."""
    from mmseg.registry import MODELS
    model_cfg = copy.deepcopy(cfg.model).to_dict()
    model_cfg['train_cfg'] = train_cfg
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.class_names = CLASSES
    return model


def blocky_labels(num_classes=6, size=32, seed=0):
    """Label maps of flat 8x8 blocks, with an ignored block."""
    g = torch.Generator().manual_seed(seed)
    blocks = torch.randint(0, num_classes, (2, size // 8, size // 8), generator=g)
    labels = blocks.repeat_interleave(8, 1).repeat_interleave(8, 2)
    labels[:, :8, :8] = 255
    return labels


def test_palette_colours_are_maximally_separated_and_prefix_stable():
    colours = palette_colours(150)
    assert colours.shape == (150, 3) and colours.abs().max() <= 1
    assert len({tuple(c.tolist()) for c in colours}) == 150
    torch.testing.assert_close(palette_colours(6), colours[:6])  # a vocabulary's colours do not depend on N
    assert min_colour_distance(colours[:6]) > min_colour_distance(colours[:19]) > min_colour_distance(colours) > 32
    assert min_colour_distance(palette_colours(847)) < 32  # ADE-847: too close for the default


def test_painting_then_nearest_colour_decoding_is_exact_on_flat_regions():
    labels = blocky_labels(19)
    colours = palette_colours(19)
    painted = paint(labels, colours)
    assert painted.shape == (2, 3, 32, 32)
    torch.testing.assert_close(painted[0, :, 20, 20], colours[labels[0, 20, 20]])
    assert (painted[:, :, :8, :8] == 0).all()  # ignored pixels: mid-grey
    decoded = colour_distance_logits(painted, colours, temperature=1.0).argmax(1)
    valid = labels != 255
    assert torch.equal(decoded[valid], labels[valid])
    # small decoding errors (well under half the minimum colour distance) do not change a label
    noisy = painted + 0.2 * min_colour_distance(colours) / 127.5 * torch.randn_like(painted).clamp(-1, 1) / 3**0.5
    assert torch.equal(colour_distance_logits(noisy, colours, 1.0).argmax(1)[valid], labels[valid])


def test_shuffled_binding_changes_colours_not_labels(palette_cfg):
    model = build(palette_cfg, train_cfg=dict(shuffle_palette=True), palette_size=12)
    torch.manual_seed(1)
    colours = model._training_colours(2, 6, 'cpu')  # (2 images, 6 classes, 3)
    fixed = model.colours(6)
    assert not torch.equal(colours[0], colours[1]) and not torch.equal(colours[0], fixed)
    pool = {tuple(c.tolist()) for c in palette_colours(12)}
    assert all(tuple(c.tolist()) in pool for c in colours.flatten(0, 1))  # drawn from the first 12
    labels = blocky_labels(6)
    valid = labels != 255
    for b in range(2):  # each image decodes with its own colours to the same labels
        painted = paint(labels[b:b + 1], colours[b])
        assert not torch.equal(painted, paint(labels[b:b + 1], fixed))
        assert torch.equal(colour_distance_logits(painted, colours[b], 1.0).argmax(1)[valid[b:b + 1]],
                           labels[b:b + 1][valid[b:b + 1]])
    unshuffled = build(palette_cfg)
    assert torch.equal(unshuffled._training_colours(2, 6, 'cpu'), fixed.expand(2, -1, -1))


def test_ignored_pixels_get_no_gradient(palette_cfg):
    model = build(palette_cfg)
    inputs, samples = make_batch(2, 32)
    for sample in samples:
        sample.gt_sem_seg.data[:, :, :16] = 255  # the left half is ignored
    decoded = []

    def keep_grad(module, args, output):
        output.retain_grad()
        decoded.append(output)

    handle = model.backbone.vae.decoder.register_forward_hook(keep_grad)
    losses = model.loss(inputs, samples)
    handle.remove()
    sum(losses.values()).backward()
    grad = decoded[0].grad
    assert grad[..., :16].abs().max() == 0 and grad[..., 16:].abs().max() > 0
    assert set(losses) == {'loss_ce', 'loss_latent'}


def test_palette_model_learns_a_batch(palette_cfg):
    model = build(palette_cfg)
    inputs, samples = make_batch(2, 32)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    first = None
    for _ in range(15):
        loss = sum(model.loss(inputs, samples).values())
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
    assert loss.item() < 0.5 * first
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(n.startswith('decode_head.') for n in trainable)


def count_calls(module):
    calls = []
    module.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[0]))
    return calls


@pytest.mark.parametrize('preset', ['1x1', '4x2'])
def test_one_unet_batch_per_step_and_one_decode_whatever_the_vocabulary(palette_cfg, preset):
    model = build(palette_cfg)
    model.eval()
    members, steps = map(int, preset.split('x'))
    model.test_cfg.update(ensemble_size=members, num_steps=steps)
    unet, decoder = count_calls(model.decode_head.unet), count_calls(model.backbone.vae.decoder)
    last_sample = []
    sample = model.decode_head.sample
    model.decode_head.sample = lambda *args: (last_sample.clear(), last_sample.extend(args), sample(*args))[-1]
    for names in (CLASSES, [f'class {i}' for i in range(150)]):
        unet.clear(), decoder.clear()
        with torch.no_grad(), model.vocabulary(names):
            pred = model.predict(torch.zeros(1, 3, 32, 40))[0]
        assert unet == [members] * steps and decoder == [1]
        assert pred.seg_logits.data.shape == (len(names), 32, 40)
        # minus scaled squared colour distances: their softmax is the class probability
        decoded = model.backbone.decode(model.decode_head.sample(*last_sample).mean(0, keepdim=True))
        expected = -torch.cdist(decoded.flatten(2).transpose(1, 2), model.colours(len(names)))**2
        scale = model.temperature * (min_colour_distance(model.colours(len(names))) / 127.5)**2
        torch.testing.assert_close(pred.seg_logits.data, (expected / scale).transpose(1, 2).reshape(-1, 32, 40),
                                   atol=1e-3, rtol=1e-4)
        assert model.cost_per_view() == dict(unet=members * steps, decodes=1, readouts=0, encodes=1)


def test_vocabulary_too_large_for_the_palette_names_binary_mode(palette_cfg):
    model = build(palette_cfg)
    with pytest.raises(ValueError, match="847 classes are too many for palette mode.*model.type='DiGSeg'"):
        with model.vocabulary([f'class {i}' for i in range(847)]):
            model.predict(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match='too many for palette mode'):
        build(palette_cfg, class_names=[f'class {i}' for i in range(500)])
    with pytest.raises(ValueError, match='topk_classes'):
        build(palette_cfg, test_cfg=dict(topk_classes=3))
    model.test_cfg['topk_classes'] = 3  # set after building, as tools/infer.py --topk does
    with pytest.raises(ValueError, match='topk_classes'):
        model.predict(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="palette mode decodes its colour mask with the VAE"):
        build(palette_cfg, test_cfg=dict(mask_readout='learned'))


def test_slide_windows_average_the_palette_logits(palette_cfg):
    model = build(palette_cfg)
    model.eval()
    image = torch.rand(1, 3, 32, 64) * 2 - 1
    whole = model.encode_decode(image, [])
    model.test_cfg.update(mode='slide', crop_size=(32, 32), stride=(32, 32))  # two windows, no overlap
    windows = model.encode_decode(image, [])
    model.test_cfg.update(mode='whole')
    left = model.encode_decode(image[..., :32], [])
    torch.testing.assert_close(windows[..., :32], left)
    assert windows.shape == whole.shape == (1, 6, 32, 64)


def test_palette_defaults_train_on_cross_entropy(palette_cfg):
    """A palette model without loss_weights in its config trains on its own defaults (ce), not on binary
    mode's (where ce is 0: a zero loss, and nothing learns)."""
    model = build_with_train_cfg(palette_cfg, dict(objective='single_step', shuffle_palette=False))  # no weights
    assert model.train_cfg['loss_weights'] == dict(ce=1.0, latent=0.0, attention=0.0)
    inputs, samples = make_batch(2, 32)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    losses = []
    for _ in range(8):
        loss = sum(model.loss(inputs, samples).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 0.5 and losses[-1] < 0.8 * losses[0], losses


def test_palette_refuses_binary_losses_and_all_zero_weights(palette_cfg):
    for unused in ('bce', 'dice', 'readout'):
        with pytest.raises(ValueError, match=rf"\['{unused}'\]: palette mode has no such loss; it uses \['attention', 'ce', 'latent'\]"):
            build_with_train_cfg(palette_cfg, dict(objective='single_step', loss_weights={unused: 1.0}))
    with pytest.raises(ValueError, match='every palette loss is zero'):
        build_with_train_cfg(palette_cfg, dict(objective='single_step', loss_weights=dict(ce=0.0)))


def test_attention_binding_loss_by_hand():
    """Each attention pixel's target is the classes' shares of its area; ignored pixels count for nothing."""
    import math
    labels = torch.tensor([[[0, 0], [1, 255]]])
    # one layer at 1x1: classes 0 and 1 cover 2/4 and 1/4 (target 2/3, 1/3), weight 3/4; logits favour class 1
    coarse = torch.tensor([[[0.0, math.log(2.0)]]])  # softmax: 1/3, 2/3
    expected = -(2 / 3 * math.log(1 / 3) + 1 / 3 * math.log(2 / 3))
    assert attention_binding_loss([coarse], labels, 2).item() == pytest.approx(expected)
    # one layer at 2x2: three valid pixels, each of one class; the ignored one left out
    fine = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [0.0, 0.0], [5.0, -5.0]]])
    fine_expected = (math.log(2) + math.log(4 / 3) + math.log(2)) / 3
    assert attention_binding_loss([fine], labels, 2).item() == pytest.approx(fine_expected)
    assert attention_binding_loss([coarse, fine], labels, 2).item() == pytest.approx((expected + fine_expected) / 2)
    with pytest.raises(ValueError, match='do not match a 2x2 label map of 3 classes'):
        attention_binding_loss([fine], labels, 3)


def test_shuffled_training_never_shows_test_times_colours():
    """With as many palette colours as classes, the one assignment test time uses is held out of training."""
    from mmseg_digseg.models.segmentors.digseg_palette import DiGSegPalette
    model = DiGSegPalette.__new__(DiGSegPalette)
    model.shuffle_palette, model.palette_size, model.min_colour_distance = True, None, 32.0
    black, white = palette_colours(2)  # test time: class 0 black, class 1 white
    torch.manual_seed(0)
    drawn = model._training_colours(20, 2, 'cpu')
    assert all(torch.equal(d, torch.stack([white, black])) for d in drawn)


def test_attention_loss_teaches_pixels_to_read_their_class_token(palette_cfg):
    """Shuffled colours with the attention loss: it appears in the losses (either objective) and falls from
    chance, so pixels come to read their own class's token whatever its colour."""
    model = build(palette_cfg, train_cfg=dict(shuffle_palette=True, objective='single_step',
                                              loss_weights=dict(ce=1.0, latent=1.0, attention=1.0)))
    inputs, samples = make_batch(2, 32)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    history = []
    for _ in range(50):
        losses = model.loss(inputs, samples)
        assert set(losses) == {'loss_ce', 'loss_latent', 'loss_attention'}
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        history.append(losses['loss_attention'].item())
    assert history[0] > 1.7 and history[-1] < 0.7 * history[0], history  # from about log 6 (chance)
    model.train_cfg['objective'] = 'denoising'
    assert set(model.loss(inputs, samples)) == {'loss_denoise', 'loss_attention'}


def test_class_tokens_are_centred_on_the_vocabulary(palette_cfg):
    """Tokens hold each class embedding less the vocabulary's mean, at unit length; one class keeps its own."""
    model = build(palette_cfg)
    pooled = torch.tensor([[1.0, 1.0, 0.0], [1.0, -1.0, 0.0], [1.0, 0.0, 3.0]])  # mean (1, 0, 1)
    tokens, mean = model.vocabulary_prompt(pooled, palette_colours(3)[None])
    expected = torch.tensor([[0.0, 1.0, -1.0], [0.0, -1.0, -1.0], [0.0, 0.0, 1.0]])
    expected = expected / torch.tensor([[2**0.5], [2**0.5], [1.0]])
    torch.testing.assert_close(tokens[0, :, :3], expected)
    torch.testing.assert_close(mean, torch.tensor([[1.0, 0.0, 1.0]]))
    one, _ = model.vocabulary_prompt(pooled[:1], palette_colours(1)[None])
    torch.testing.assert_close(one[0, :, :3], pooled[:1])
