# DiGSeg-tiny the paper's way, on the 6-class SynthShapes: fine-tuned from the generatively pretrained tiny
# U-Net (checkpoints/tiny_sd/unet, made by tools/pretrain_tiny_unet.py, as the paper starts from Stable
# Diffusion) with the paper configs' recipe: denoising on 3 present + 1 absent classes per image and step,
# training timesteps in [900, 1000), one step from noise at test time.
# 1,800 steps of 8 (image, class) pairs, about 60 % of the single-step config's training time (no decoder in
# the loss): 80.65 +- 1.29 mIoU over three seeds against 83.12 +- 1.78 (docs/embedded_default.md, "(h)").
#   python tools/train.py configs/digseg/digseg_tiny-pretrained_synth-shapes-64.py
_base_ = ['./digseg_tiny_synth-shapes-64.py']
model = dict(
    decode_head=dict(pretrained='checkpoints/tiny_sd', unet_cfg=None),  # the U-Net and its scheduler
    train_cfg=dict(_delete_=True, objective='denoising', num_positive=3, num_negative=1, timestep_range=(900, 1000)),
    test_cfg=dict(init_noise='gaussian'))
max_iters = 1800
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=20, end=max_iters, eta_min=1e-5),
]
