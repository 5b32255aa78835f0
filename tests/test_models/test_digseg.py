import zlib

import pytest
import torch
from mmengine.structures import PixelData

from mmseg.structures import SegDataSample
from mmseg_digseg.models.segmentors import scores_to_logits
from mmseg_digseg.models.segmentors import digseg as digseg_module
from mmseg_digseg.models.segmentors.digseg import PRUNED_LOGIT


def test_scores_to_logits_keeps_argmax_and_inverts_sigmoid(tiny_model):
    scores = torch.tensor([[[0.1]], [[0.7]], [[0.4]]])[None]  # 3 classes, 1 pixel
    logits = scores_to_logits(scores)
    torch.testing.assert_close(logits.sigmoid(), scores)
    [result] = tiny_model.postprocess_result(logits)
    assert result.pred_sem_seg.data.item() == 1  # label = position of the best class in the vocabulary


@pytest.mark.parametrize('meta', [
    dict(ori_shape=(6, 7)),  # already the original size: no resize
    dict(ori_shape=(9, 11)),  # resized
    dict(ori_shape=(4, 7), padding_size=[0, 0, 1, 1]),  # test-time padding dropped
    dict(ori_shape=(6, 7), flip=True, flip_direction='horizontal'),
    dict(ori_shape=(12, 5), flip=True, flip_direction='vertical'),
])
def test_postprocessing_agrees_with_mmsegs(tiny_model, meta):
    from mmseg.models.segmentors import BaseSegmentor
    logits = torch.randn(2, 150, 6, 7)
    logits[0, [3, 40], 2, 2] = 50.0  # a tie: the first class wins in both
    ours = tiny_model.postprocess_result(logits, [SegDataSample(metainfo=meta) for _ in range(2)])
    mmsegs = BaseSegmentor.postprocess_result(tiny_model, logits, [SegDataSample(metainfo=meta) for _ in range(2)])
    for a, b in zip(ours, mmsegs):
        assert torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data)
        assert a.pred_sem_seg.data.shape == (1, *meta['ori_shape'])
        torch.testing.assert_close(a.seg_logits.data, b.seg_logits.data, rtol=0, atol=1e-6)
    if meta == dict(ori_shape=(6, 7)):  # no resize, no flip: the tied pixel is where it was set
        assert ours[0].pred_sem_seg.data[0, 2, 2] == 3


def test_labels_follow_the_vocabulary_order(tiny_model):
    tiny_model.eval()
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    names = list(tiny_model.class_names)
    scores = tiny_model.score_classes(image, names)
    order = [3, 0, 5, 1, 4, 2]
    permuted = tiny_model.score_classes(image, [names[i] for i in order])
    torch.testing.assert_close(permuted, scores[:, order], atol=1e-5, rtol=1e-4)
    # chunking the classes through the U-Net changes nothing
    tiny_model.test_cfg['class_chunk_size'] = 4
    torch.testing.assert_close(tiny_model.score_classes(image, names), scores, atol=1e-5, rtol=1e-4)


def test_ensemble_members_are_averaged_in_latent_space(tiny_model):
    tiny_model.eval()
    tiny_model.test_cfg.update(init_noise='gaussian', ensemble_size=3, num_steps=2)
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    latents = tiny_model.extract_feat(image)
    scores = tiny_model.score_classes(image, ['disc'])
    # the same thing by hand
    head, vae = tiny_model.decode_head, tiny_model.backbone
    pooled, tokens = tiny_model.text_encoder(['disc'])
    seed = zlib.crc32(image[0].numpy().tobytes())  # test_cfg.seed (0) + crc32 of the image's pixels
    noise = torch.randn((3, vae.latent_channels, 16, 16), generator=torch.Generator().manual_seed(seed))
    members = head.sample(latents.expand(3, -1, -1, -1), tokens.expand(3, -1, -1), pooled.expand(3, -1), noise, 2)
    expected = ((vae.decode_masks(members.mean(0, keepdim=True)) + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(scores[0], expected, atol=1e-5, rtol=1e-4)


def test_predict_pads_odd_sizes_and_crops_back(tiny_model):
    tiny_model.eval()
    image = torch.rand(1, 3, 50, 61) * 2 - 1  # not a multiple of the VAE factor
    sample = SegDataSample(metainfo=dict(ori_shape=(50, 61), img_shape=(50, 61), pad_shape=(50, 61),
                                         padding_size=[0, 0, 0, 0]))
    [result] = tiny_model.predict(image, [sample])
    assert result.seg_logits.data.shape == (6, 50, 61)
    assert result.pred_sem_seg.data.shape == (1, 50, 61)
    assert result.pred_sem_seg.data.max() < 6


def count_unet_batches(model):
    calls = []
    model.decode_head.unet.register_forward_hook(lambda mod, args, out: calls.append(tuple(args[0].shape)))
    return calls


def test_topk_pruning_keeps_the_best_prescored_classes(tiny_model):
    tiny_model.eval()
    tiny_model.test_cfg.update(init_noise='gaussian', class_chunk_size=4, prescore_scale=1.0)
    names = list(tiny_model.class_names)
    image = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    full = tiny_model.encode_decode(image, [])
    # K >= the vocabulary size: no pre-score, the same predictions
    for k in (len(names), 10):
        tiny_model.test_cfg['topk_classes'] = k
        torch.testing.assert_close(tiny_model.encode_decode(image, []), full)
    # K = 2: the pre-score of a one-step, one-member pass at full scale is the mean score of the
    # unpruned 1x1 prediction, so the kept classes are its top 2 per image
    tiny_model.test_cfg['topk_classes'] = 2
    pruned = tiny_model.encode_decode(image, [])
    for b in range(2):
        expected = full[b].sigmoid().flatten(1).mean(1).topk(2).indices.sort().values
        kept = (pruned[b] != PRUNED_LOGIT).flatten(1).all(1).nonzero()[:, 0]
        assert kept.tolist() == expected.tolist()
        # (as scores: other chunks, other float summation order, which logits near 0 or 1 magnify)
        torch.testing.assert_close(pruned[b, kept].sigmoid(), full[b, kept].sigmoid(), atol=1e-5, rtol=0)
        assert (pruned[b].flatten(1).amax(1) == PRUNED_LOGIT).sum() == len(names) - 2
        assert set(pruned[b].argmax(0).unique().tolist()) <= set(kept.tolist())


def test_prescore_is_one_cheap_pass_then_only_kept_classes_are_denoised(tiny_model):
    tiny_model.eval()
    tiny_model.test_cfg.update(topk_classes=2, preset=None, ensemble_size=2, num_steps=2, class_chunk_size=4)
    calls = count_unet_batches(tiny_model)
    tiny_model.encode_decode(torch.zeros(1, 3, 64, 64), [])
    # pre-score: 6 classes in chunks of 4, one member, one step, latents 16 -> 8 (prescore_scale 0.5);
    # then 2 classes x 2 members, 2 steps, at full latent size
    assert calls == [(4, 32, 8, 8), (2, 32, 8, 8), (4, 32, 16, 16), (4, 32, 16, 16)]


def test_prescore_latent_shrinks_bf16_latents(tiny_model):
    """Under precision='bf16' the latents are bf16, and PyTorch's antialiased CPU resize has no bf16 kernel
    (a CPU with native bf16 failed here): the pre-score latent keeps the latent's dtype, shrunk by half."""
    tiny_model.eval()
    tiny_model.test_cfg.update(prescore_scale=0.5)
    latent = torch.linspace(-1, 1, 16).expand(1, 16, 16, 16).to(torch.bfloat16)  # a ramp along the width
    shrunk = tiny_model._prescore_latent(torch.zeros(1, 3, 64, 64), [latent])
    assert shrunk.dtype == torch.bfloat16 and shrunk.shape == (1, 16, 8, 8)
    # a symmetric filter keeps a linear ramp linear: away from the borders (where the filter is cut off)
    # output j is the ramp at its centre, input position 2j + 0.5: -1 + 2 (2j + 0.5) / 15, up to bf16's rounding
    midpoints = torch.tensor([-1 + 2 * (2 * j + 0.5) / 15 for j in range(1, 7)])
    torch.testing.assert_close(shrunk[0, 0, 0, 1:7].float(), midpoints, atol=0.01, rtol=0)


@pytest.mark.parametrize('topk', [None, 3])
def test_labels_only_prediction_matches_the_full_logits(tiny_model, topk):
    """return_logits=False builds the label map chunk by chunk; it must equal MMSeg's postprocessing of
    the full logits, through the test-time padding, a flip and the resize to the original size."""
    tiny_model.eval()
    tiny_model.test_cfg.update(init_noise='gaussian', class_chunk_size=4, topk_classes=topk)
    image = torch.rand(1, 3, 50, 61, generator=torch.Generator().manual_seed(2)) * 2 - 1
    meta = dict(ori_shape=(67, 83), img_shape=(47, 58), pad_shape=(50, 61), padding_size=[0, 3, 0, 3],
                flip=True, flip_direction='horizontal')
    [full] = tiny_model.predict(image, [SegDataSample(metainfo=meta)])
    tiny_model.test_cfg['return_logits'] = False
    [labels_only] = tiny_model.predict(image, [SegDataSample(metainfo=meta)])
    assert 'seg_logits' not in labels_only
    assert labels_only.pred_sem_seg.data.shape == full.pred_sem_seg.data.shape == (1, 67, 83)
    assert torch.equal(labels_only.pred_sem_seg.data, full.pred_sem_seg.data)
    assert len(full.pred_sem_seg.data.unique()) > 1  # a non-trivial map was compared


def test_vocabulary_by_name_or_file(tiny_model, tmp_path):
    tiny_model.class_names = 'pascal_context_59'  # shipped, with synonyms
    assert len(tiny_model.class_names) == 59 and tiny_model.class_names[0].startswith('aeroplane')
    path = tmp_path / 'mine.txt'
    path.write_text('# my classes\nsofa, couch\n\ncat\n')
    with tiny_model.vocabulary(str(path)):
        assert tiny_model.class_names == ['sofa, couch', 'cat']
    with pytest.raises(FileNotFoundError, match='a shipped vocabulary .*ade20k_847'):
        tiny_model.class_names = 'ade20k_848'
    path.write_text('cat\ndog\ncat\n')
    with pytest.raises(ValueError, match=r"repeats \['cat'\]"):
        tiny_model.class_names = str(path)


def test_bad_topk_is_refused(tiny_cfg):
    from mmseg.registry import MODELS
    with pytest.raises(ValueError, match='topk_classes must be a positive int'):
        MODELS.build(dict(tiny_cfg.model, test_cfg=dict(topk_classes=0)))


@pytest.mark.parametrize('share', [0, 1.5])
def test_timestep_range_share_outside_0_1_is_refused(tiny_cfg, share):
    from mmseg.registry import MODELS
    with pytest.raises(ValueError, match='timestep_range_share must be in'):
        MODELS.build(dict(tiny_cfg.model, train_cfg=dict(tiny_cfg.model.train_cfg, timestep_range_share=share)))


def make_batch(num_images=2, size=64):
    g = torch.Generator().manual_seed(0)
    inputs = torch.rand(num_images, 3, size, size, generator=g) * 0.6 - 0.3
    colours = torch.tensor([[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0], [-1.0, 1.0, -1.0]])
    samples = []
    for i in range(num_images):
        gt = torch.zeros(1, size, size, dtype=torch.long)
        gt[:, 8:30, 8:30] = 1 + i
        inputs[i, :, 8:30, 8:30] = colours[i % 3, :, None, None]  # each object visible, in its own colour
        gt[:, 40:, 40:] = 255  # ignored pixels
        samples.append(SegDataSample(gt_sem_seg=PixelData(data=gt)))
    return inputs, samples


@pytest.mark.parametrize('objective', ['denoising', 'single_step'])
def test_loss_trains_only_the_unet_and_text_projection(tiny_model, objective):
    tiny_model.train()
    tiny_model.train_cfg['objective'] = objective
    tiny_model.train_cfg['loss_weights'] = dict(bce=1.0, dice=1.0, latent=0.5)
    losses = tiny_model.loss(*make_batch())
    expected = {'loss_denoise'} if objective == 'denoising' else {'loss_bce', 'loss_dice', 'loss_latent'}
    assert set(losses) == expected | {'loss_readout'}
    total = sum(losses.values())
    assert torch.isfinite(total)
    losses['loss_readout'].backward(retain_graph=True)  # the readout learns alone from its loss
    trained = {n.split('.')[0] + '.' + n.split('.')[1] for n, p in tiny_model.named_parameters() if p.grad is not None}
    assert trained == {'mask_readout.layers'}
    (total - losses['loss_readout']).backward()
    trained = {n.split('.')[0] + '.' + n.split('.')[1] for n, p in tiny_model.named_parameters() if p.grad is not None}
    assert trained == {'decode_head.unet', 'decode_head.text_proj', 'mask_readout.layers'}
    assert tiny_model.decode_head.unet.class_embedding.linear_2.weight.grad.abs().sum() > 0


def test_pair_sampling_draws_present_and_absent_classes(tiny_model):
    tiny_model.train_cfg.update(num_positive=2, num_negative=3)
    gt = torch.zeros(1, 8, 8, dtype=torch.long)
    gt[0, :2] = 4
    gt[0, -1] = 255
    img_idx, cls_idx = tiny_model._sample_pairs(gt, 6)
    assert img_idx.tolist() == [0] * 5
    assert set(cls_idx[:2].tolist()) == {0, 4}
    assert set(cls_idx[2:].tolist()) <= {1, 2, 3, 5} and len(set(cls_idx[2:].tolist())) == 3


def test_vocabulary_errors(tiny_model):
    with pytest.raises(ValueError, match='empty'):
        tiny_model.class_names = []
    with pytest.raises(ValueError, match='repeats'):
        tiny_model.class_names = ['disc', 'ring', 'disc']
    tiny_model.class_names = None
    with pytest.raises(RuntimeError, match='no vocabulary'):
        tiny_model.class_names
    tiny_model.dataset_meta = dict(classes=('a', 'b'))
    assert tiny_model.class_names == ['a', 'b'] and tiny_model.out_channels == 2


def test_single_step_objective_learns_a_batch(tiny_model):
    """Optimiser steps on one batch (gradients clipped as the tiny schedule does): the U-Net really learns
    the masks through the frozen VAE, and the argmax over classes finds the objects."""
    torch.manual_seed(0)
    tiny_model.train()
    assert tiny_model.train_cfg['loss_weights']['ce'] > 0  # the tiny recipe: every class, cross-entropy
    inputs, samples = make_batch(2)
    trained = [p for p in tiny_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=2e-3)
    losses = []
    for _ in range(50):
        loss = sum(tiny_model.loss(inputs, samples).values())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.5 * losses[0], losses
    with torch.no_grad():
        labels = tiny_model.score_classes(inputs, tiny_model.class_names).argmax(1)
    gt = torch.stack([s.gt_sem_seg.data[0] for s in samples])
    objects = (gt > 0) & (gt != 255)
    assert (labels == gt)[objects].float().mean() > 0.6  # untrained: 0 (all background)


def test_every_class_of_every_image_with_cross_entropy(tiny_model):
    """num_positive=num_negative=None: each image gets the whole vocabulary in order, and the
    cross-entropy across its classes equals F.cross_entropy on logit(score), ignoring 255."""
    import torch.nn.functional as F
    tiny_model.train()
    tiny_model.train_cfg.update(objective='single_step', num_positive=None, num_negative=None,
                                loss_weights=dict(bce=1.0, dice=1.0, ce=1.0))
    img_idx, cls_idx = tiny_model._sample_pairs(torch.zeros(2, 8, 8, dtype=torch.long), 6)
    assert img_idx.tolist() == [0] * 6 + [1] * 6 and cls_idx.tolist() == list(range(6)) * 2
    inputs, samples = make_batch()
    torch.manual_seed(0)
    losses = tiny_model.loss(inputs, samples)
    assert set(losses) == {'loss_bce', 'loss_dice', 'loss_ce', 'loss_readout'}
    with torch.no_grad():
        scores = tiny_model.score_classes(inputs, tiny_model.class_names)  # zeros init: the training pass
    gt = torch.stack([s.gt_sem_seg.data[0] for s in samples])
    expected = F.cross_entropy(scores_to_logits(scores), gt, ignore_index=255)
    torch.testing.assert_close(losses['loss_ce'].detach(), expected, atol=1e-4, rtol=1e-4)


def test_denoising_with_cross_entropy_over_the_drawn_classes(tiny_model):
    """Recipe (d): the denoising MSE plus a cross-entropy across the drawn classes on the VAE decode of the
    U-Net's clean estimate; its gradient reaches the U-Net."""
    tiny_model.train()
    tiny_model.train_cfg.update(objective='denoising', num_positive=2, num_negative=1,
                                loss_weights=dict(ce=1.0, readout=0.01))
    inputs, samples = make_batch()
    torch.manual_seed(0)
    losses = tiny_model.loss(inputs, samples)
    assert set(losses) == {'loss_denoise', 'loss_ce', 'loss_readout'}
    assert losses['loss_ce'] > 0
    tiny_model.zero_grad()
    losses['loss_ce'].backward()
    assert tiny_model.decode_head.unet.conv_in.weight.grad.abs().sum() > 0


@pytest.mark.parametrize('part, key', [('train_cfg', 'num_positives'), ('test_cfg', 'ensemble_sizes'),
                                       ('train_cfg', 'loss_weights')])
def test_unknown_config_keys_are_errors_listing_the_valid_ones(tiny_cfg, part, key):
    from mmseg.registry import MODELS
    value = dict(bcee=1.0) if key == 'loss_weights' else 2
    bad = 'bcee' if key == 'loss_weights' else key
    with pytest.raises(ValueError, match=rf"Unknown key\(s\) \['{bad}'\].*valid keys: \[.*"):
        MODELS.build(dict(tiny_cfg.model, **{part: {key: value}}))


def test_slide_with_one_window_equals_whole(tiny_model):
    tiny_model.eval()
    tiny_model.test_cfg.update(init_noise='gaussian')
    image = torch.rand(1, 3, 50, 61, generator=torch.Generator().manual_seed(3)) * 2 - 1
    whole = tiny_model.encode_decode(image, [])
    tiny_model.test_cfg.update(mode='slide', crop_size=(64, 64), stride=(48, 48))
    assert tiny_model.windows(50, 61) == [(0, 50, 0, 61)]
    torch.testing.assert_close(tiny_model.encode_decode(image, []), whole)


def test_slide_windows_are_mmsegs_and_only_window_sized_tensors_run(tiny_model):
    """A 64x128 image in 64x64 windows every 32 px: MMSeg's grid; the U-Net and the VAE decoder only
    ever see one window's latent (so peak memory follows the window, not the image); pixels covered by
    one window equal that window predicted alone, overlaps are the mean."""
    tiny_model.eval()
    tiny_model.test_cfg.update(init_noise='gaussian', mode='slide', crop_size=(64, 64), stride=(32, 32),
                               class_chunk_size=6)
    assert tiny_model.windows(64, 128) == [(0, 64, 0, 64), (0, 64, 32, 96), (0, 64, 64, 128)]
    image = torch.rand(1, 3, 64, 128, generator=torch.Generator().manual_seed(4)) * 2 - 1
    unet_inputs = count_unet_batches(tiny_model)
    decoded = []
    tiny_model.backbone.vae.decoder.register_forward_hook(lambda m, a, out: decoded.append(tuple(out.shape)))
    meta = [dict(img_path='one.png')]  # the start noise follows the image's path: each window alone gets the same

    def scores_of(image):
        return torch.cat([chunk for _, chunk in next(tiny_model.class_scores(image, tiny_model.class_names, meta))])

    scores = scores_of(image)
    assert unet_inputs == [(6, 32, 16, 16)] * 3 and set(decoded) == {(6, 3, 64, 64)}
    tiny_model.test_cfg.update(mode='whole')
    windows = [scores_of(image[..., x:x + 64]) for x in (0, 32, 64)]
    torch.testing.assert_close(scores[..., :32], windows[0][..., :32])
    torch.testing.assert_close(scores[..., 32:64], (windows[0][..., 32:] + windows[1][..., :32]) / 2)
    torch.testing.assert_close(scores[..., 96:], windows[2][..., 32:])


def test_slide_needs_crop_and_stride(tiny_cfg):
    from mmseg.registry import MODELS
    with pytest.raises(ValueError, match='crop_size'):
        MODELS.build(dict(tiny_cfg.model, test_cfg=dict(mode='slide')))


def test_half_precision_inference_is_close_to_fp32(tiny_model, monkeypatch):
    monkeypatch.setattr(digseg_module, 'cpu_computes_natively', lambda dtype: True)  # as on AMX CPUs
    tiny_model.eval()
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(5)) * 2 - 1
    meta = dict(ori_shape=(64, 64), img_shape=(64, 64), pad_shape=(64, 64), padding_size=[0, 0, 0, 0])
    [fp32] = tiny_model.predict(image, [SegDataSample(metainfo=meta)])
    calls = []
    tiny_model.decode_head.unet.register_forward_hook(lambda m, a, out: calls.append(out.sample.dtype))
    tiny_model.test_cfg['precision'] = 'bf16'
    [bf16] = tiny_model.predict(image, [SegDataSample(metainfo=meta)])
    assert calls and set(calls) == {torch.bfloat16}  # the U-Net really ran in bf16
    assert bf16.seg_logits.data.dtype == torch.float32
    assert (bf16.seg_logits.data.sigmoid() - fp32.seg_logits.data.sigmoid()).abs().mean() < 0.02
    # (labels are not compared: an untrained model's classes are near ties, which any rounding flips)
    assert (bf16.seg_logits.data.sigmoid() - fp32.seg_logits.data.sigmoid()).abs().max() < 0.15


def test_checkpoints_hold_only_what_trains(tiny_model, tiny_cfg, tmp_path):
    """The frozen VAE and text tower stay out of state_dict; such a state dict loads strictly (torch) and
    without missing keys (mmengine's loader, as init_model and --resume use it)."""
    from mmengine.runner.checkpoint import load_state_dict
    from mmseg.registry import MODELS
    state = tiny_model.state_dict()
    assert state and not [k for k in state if k.startswith(('backbone.', 'text_encoder.'))]
    assert 'decode_head.text_proj.weight' in state
    torch.manual_seed(1)
    other = MODELS.build(tiny_cfg.model)
    other.load_state_dict(state, strict=True)
    for key, value in other.state_dict().items():
        assert torch.equal(value, state[key]), key
    torch.manual_seed(2)
    third = MODELS.build(tiny_cfg.model)
    load_state_dict(third, dict(state), strict=True)  # raises on missing or unexpected keys
    assert torch.equal(third.decode_head.unet.conv_in.weight, tiny_model.decode_head.unet.conv_in.weight)


def test_learned_readout_reads_mask_latents_without_the_decoder(tiny_model):
    """test_cfg.mask_readout='learned': the readout's scores of the denoised latents, no VAE decoder pass."""
    tiny_model.eval()
    image = torch.rand(1, 3, 32, 40) * 2 - 1
    latents = []
    tiny_model.decode_head.unet.register_forward_hook(lambda mod, args, out: latents.append(-out.sample))
    decodes = []
    tiny_model.backbone.vae.decoder.register_forward_hook(lambda *args: decodes.append(1))
    tiny_model.test_cfg['mask_readout'] = 'learned'
    logits = tiny_model.encode_decode(image, [])
    assert not decodes and logits.shape == (1, 6, 32, 40)
    # single step at t=T, v-prediction, zero-terminal-SNR: the clean latent is minus the prediction
    expected = tiny_model.mask_readout.scores(latents[0])
    torch.testing.assert_close(logits[0].sigmoid(), expected.clamp(1e-4, 1 - 1e-4), atol=1e-5, rtol=1e-4)
    assert tiny_model.cost_per_view() == dict(unet=6, decodes=0, readouts=6, encodes=1)


def test_learned_readout_needs_a_readout_module(tiny_cfg):
    from mmseg.registry import MODELS
    with pytest.raises(ValueError, match="mask_readout='learned' needs a trained readout"):
        MODELS.build(dict(tiny_cfg.model, mask_readout=None, test_cfg=dict(mask_readout='learned')))
    with pytest.raises(ValueError, match='mask_readout must be one of'):
        MODELS.build(dict(tiny_cfg.model, test_cfg=dict(mask_readout='decoder')))


def test_readout_fits_encoded_masks(tiny_model):
    """Trained on (encoded mask, mask) pairs, the readout reproduces the masks."""
    masks = torch.zeros(4, 32, 32, dtype=torch.bool)
    for i in range(4):
        masks[i, 4 * i:4 * i + 14, 6:6 + 5 * (i + 1)] = True
    latents = tiny_model.backbone.encode_masks(masks)
    readout = tiny_model.mask_readout
    optimizer = torch.optim.Adam(readout.parameters(), lr=3e-3)
    valid = torch.ones_like(masks)
    for _ in range(150):
        loss = readout.loss(latents, masks, valid)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    iou = ((readout.scores(latents) > 0.5) & masks).sum() / ((readout.scores(latents) > 0.5) | masks).sum()
    assert iou > 0.9


def test_readout_costs_a_fraction_of_the_decoder(tiny_model):
    """FLOPs per mask at equal resolution (counted, not timed): at least 3x fewer than the VAE decode."""
    from torch.utils.flop_counter import FlopCounterMode
    latents = torch.randn(1, tiny_model.backbone.latent_channels, 16, 16)

    def flops(fn):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            out = fn(latents)
        return counter.get_total_flops(), out.shape[-2:]

    decode, decode_size = flops(tiny_model.backbone.decode_masks)
    readout, readout_size = flops(tiny_model.mask_readout.scores)
    assert decode_size == readout_size == (64, 64)
    assert decode >= 3 * readout


def test_slide_stride_larger_than_the_crop_is_refused(tiny_cfg):
    """Pixels between windows would get no score (0 / 0 = NaN logits): refused when the model is built."""
    from mmseg.registry import MODELS
    for stride in [(48, 80), (80, 48)]:
        with pytest.raises(ValueError, match=r'stride=\(.*\) is larger than crop_size=\(64, 64\)'):
            MODELS.build(dict(tiny_cfg.model, test_cfg=dict(mode='slide', crop_size=(64, 64), stride=stride)))
    MODELS.build(dict(tiny_cfg.model, test_cfg=dict(mode='slide', crop_size=(64, 64), stride=(64, 64))))


def test_readout_trains_on_the_unets_clean_estimate_under_denoising(tiny_model):
    """Under the paper objective the readout reads, at test time, the clean latent the U-Net predicts: it
    trains on the true masks' latents and on the U-Net's clean estimate of each noised sample."""
    tiny_model.train()
    tiny_model.train_cfg.update(objective='denoising', num_positive=2, num_negative=1)
    unet_io = []
    tiny_model.decode_head.unet.register_forward_hook(
        lambda mod, args, out: unet_io.append((args[0][:, args[0].shape[1] // 2:], args[1], out.sample)))
    readout_inputs = []
    loss = tiny_model.mask_readout.loss
    tiny_model.mask_readout.loss = lambda latents, *rest: (readout_inputs.append(latents), loss(latents, *rest))[1]
    inputs, samples = make_batch(2)
    tiny_model.loss(inputs, samples)
    [(noisy, timesteps, v)] = unet_io
    [latents] = readout_inputs
    assert latents.shape[0] == 2 * noisy.shape[0] and not latents.requires_grad
    # v-prediction (the tiny schedule): x0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v, in float64
    alpha_bar = tiny_model.decode_head.train_scheduler.alphas_cumprod.double()[timesteps].view(-1, 1, 1, 1)
    expected = alpha_bar.sqrt() * noisy.double() - (1 - alpha_bar).sqrt() * v.double()
    torch.testing.assert_close(latents[noisy.shape[0]:].double(), expected, atol=1e-5, rtol=1e-4)
    assert tiny_model.readout_state == 'trained'


def test_learned_readout_is_refused_when_the_checkpoint_had_none(tiny_model, tiny_cfg):
    """A checkpoint trained without model.mask_readout leaves the readout random: 'learned' then refuses."""
    from mmengine.runner.checkpoint import load_state_dict
    from mmseg.registry import MODELS
    no_readout = MODELS.build(dict(tiny_cfg.model, mask_readout=None))
    tiny_model.eval()
    tiny_model.test_cfg['mask_readout'] = 'learned'
    load_state_dict(tiny_model, no_readout.state_dict())
    assert tiny_model.readout_state == 'missing'
    with pytest.raises(RuntimeError, match='holds no mask_readout weights.*--mask-readout vae'):
        tiny_model.predict(torch.zeros(1, 3, 32, 32))
    tiny_model.test_cfg['mask_readout'] = 'vae'  # the decoder still works
    assert tiny_model.predict(torch.zeros(1, 3, 32, 32))[0].seg_logits.data.shape == (6, 32, 32)
    tiny_model.load_state_dict(MODELS.build(tiny_cfg.model).state_dict())  # one with readout weights
    tiny_model.test_cfg['mask_readout'] = 'learned'
    assert tiny_model.readout_state == 'loaded'
    assert tiny_model.predict(torch.zeros(1, 3, 32, 32))[0].seg_logits.data.shape == (6, 32, 32)


def test_predictions_do_not_depend_on_the_batch_size(tiny_model):
    """Start noise is seeded by each image's path (or pixels), not its place in the batch."""
    tiny_model.eval()
    tiny_model.test_cfg.update(init_noise='gaussian', ensemble_size=2)
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1
    images[2] = images[1]  # two copies of one picture, saved under two names

    def metas(paths):
        return [SegDataSample(metainfo=dict(ori_shape=(32, 32), img_shape=(32, 32), pad_shape=(32, 32),
                                            padding_size=[0] * 4, img_path=p)) for p in paths]

    paths = ['a.png', 'b.png', 'c.png']
    batched = [r.seg_logits.data for r in tiny_model.predict(images, metas(paths))]
    for i in range(3):
        [alone] = tiny_model.predict(images[i:i + 1], metas(paths[i:i + 1]))
        torch.testing.assert_close(alone.seg_logits.data, batched[i], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(batched[1], batched[2], atol=1e-3)  # other name, other noise
    # without paths (the Python API), the pixels seed it: the same picture gets the same noise anywhere
    scores = tiny_model.score_classes(images, tiny_model.class_names)
    torch.testing.assert_close(scores[1], scores[2])
    torch.testing.assert_close(tiny_model.score_classes(images[2:], tiny_model.class_names)[0], scores[2])


@pytest.mark.parametrize('native', [True, False])
def test_half_precision_on_cpu_only_where_the_cpu_has_it(tiny_model, monkeypatch, native):
    """bf16 autocast on a CPU without native bf16 (AVX2 only) is ~100x slower: fp32 there, with a warning."""
    monkeypatch.setattr(digseg_module, 'cpu_computes_natively', lambda dtype: native)
    tiny_model.eval()
    tiny_model.test_cfg['precision'] = 'bf16'
    dtypes = []
    tiny_model.decode_head.unet.register_forward_hook(lambda m, a, out: dtypes.append(out.sample.dtype))
    warnings = []
    monkeypatch.setattr(digseg_module, 'print_log', lambda msg, *args, **kwargs: warnings.append(msg))
    for _ in range(2):
        tiny_model.predict(torch.zeros(1, 3, 32, 32))
    assert set(dtypes) == {torch.bfloat16 if native else torch.float32}
    if native:
        assert not [w for w in warnings if 'native' in w]
    else:
        [warning] = [w for w in warnings if 'native' in w]  # once, not per image
        assert 'bf16' in warning and 'fp32 instead' in warning


@pytest.mark.parametrize('isa, native', [(None, True), ('ALL', True), ('AVX512_CORE_BF16', True),
                                         ('AVX512_CORE_AMX', True), ('AVX2', False), ('AVX512_CORE', False)])
def test_native_bf16_needs_the_cpu_and_onednn_to_allow_it(monkeypatch, isa, native):
    """A CPU with AVX512-BF16 whose oneDNN is held to AVX2 (ONEDNN_MAX_CPU_ISA) emulates bf16 convolutions."""
    import torch.cpu
    monkeypatch.setattr(torch.cpu, '_is_avx512_bf16_supported', lambda: True)
    monkeypatch.setattr(torch.cpu, '_is_amx_tile_supported', lambda: False)
    monkeypatch.delenv('DNNL_MAX_CPU_ISA', raising=False)
    if isa is None:
        monkeypatch.delenv('ONEDNN_MAX_CPU_ISA', raising=False)
    else:
        monkeypatch.setenv('ONEDNN_MAX_CPU_ISA', isa)
    assert digseg_module.cpu_computes_natively(torch.bfloat16) is native
    monkeypatch.setattr(torch.cpu, '_is_avx512_bf16_supported', lambda: False)  # an AVX2-only CPU
    assert digseg_module.cpu_computes_natively(torch.bfloat16) is False


def test_latent_pixels_over_ignored_pixels_weighted_or_excluded(tiny_model):
    """train_cfg.latent_ignore: a latent pixel (f x f image pixels) partly over ignored pixels keeps the valid
    fraction as its weight ('weight'), or gets none ('exclude')."""
    f = tiny_model.backbone.downsample_factor
    valid = torch.ones(1, 2 * f, 2 * f, dtype=torch.bool)
    valid[0, :f // 2, :f] = False  # half of the first latent pixel
    valid[0, f:, f:] = False  # the whole last latent pixel
    assert tiny_model.latent_weights(valid)[0, 0].tolist() == [[0.5, 1.0], [1.0, 0.0]]
    tiny_model.train_cfg['latent_ignore'] = 'exclude'
    assert tiny_model.latent_weights(valid)[0, 0].tolist() == [[0.0, 1.0], [1.0, 0.0]]


def test_bad_latent_ignore_and_all_zero_losses_are_refused(tiny_cfg):
    from mmseg.registry import MODELS
    with pytest.raises(ValueError, match="latent_ignore must be one of \\['weight', 'exclude'\\]"):
        MODELS.build(dict(tiny_cfg.model, train_cfg=dict(latent_ignore='drop')))
    with pytest.raises(ValueError, match='no loss'):
        MODELS.build(dict(tiny_cfg.model, train_cfg=dict(objective='single_step',
                                                         loss_weights=dict(bce=0.0, dice=0.0))))
