# DiGSeg-tiny in palette mode (beyond the paper): one colour-coded mask per image, decoded once, whatever
# the number of classes.
#   python tools/train.py configs/digseg/digseg-palette_tiny_synth-shapes-64.py
_base_ = ['./digseg_tiny_synth-shapes-64.py']
model = dict(
    type='DiGSegPalette',
    # the tiny VAE fitted further with painted label maps in its mix (tools/fit_tiny_vae.py --palette-masks):
    # the shipped one turns saturated colours grey (palette ceiling 28.3 mIoU on this data, now 79.1)
    backbone=dict(pretrained='checkpoints/tiny_sd_palette'),
    mask_readout=None,
    # single_step: cross-entropy over the decoded mask's colour distances, plus MSE to the painted mask's
    # latent (a smooth signal while the decoded colours are still far off); bce and dice are binary mode's.
    # shuffle_palette=True draws each image's colours, binding them to classes through the prompt only (for
    # vocabularies that change); it learns with loss_weights.attention=1.0 (which class token each pixel
    # attends to): 75.81 mIoU in twice the training, against 78.02 with fixed colours (docs/benchmarks.md),
    # so a fixed vocabulary keeps fixed colours.
    train_cfg=dict(shuffle_palette=False, loss_weights=dict(_delete_=True, ce=1.0, latent=1.0)))
# one U-Net sample per image (binary mode: one per image and class), so more images per step
train_dataloader = dict(batch_size=16)
# the 800-iteration schedule of configs/_base_/schedules/schedule_tiny.py (binary mode's is longer)
train_cfg = dict(max_iters=800, val_interval=800)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=20, end=800, eta_min=1e-5),
]
