# DiGSeg fine-tuning: 80k iterations of 2 images per GPU; with 8 GPUs and accumulative_counts=2 that is
# 40k updates of 32 images (Marigold's effective batch). AdamW at 3e-5 after a linear warm-up.
# Mixed precision through mmengine's AmpOptimWrapper: bf16 (A100/H100); fp16 GPUs (V100, T4):
#   --cfg-options optim_wrapper.dtype=float16       (the dynamic loss scaling then matters)
optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='bfloat16',
    loss_scale='dynamic',
    accumulative_counts=2,
    optimizer=dict(type='AdamW', lr=3e-5, betas=(0.9, 0.999), weight_decay=1e-2),
    # A non-empty paramwise_cfg makes DefaultOptimWrapperConstructor skip requires_grad=False parameters:
    # the frozen VAE and text tower stay out of the optimizer (without it, model.parameters() goes in whole).
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=1000),
    dict(type='PolyLR', power=1.0, eta_min=1e-7, by_epoch=False, begin=1000, end=80000),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=80000, val_interval=8000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=8000, max_keep_ckpts=3, save_best='mIoU'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
