# MMSeg's SegFormer MiT-b0 recipe without a dataset, so that the baselines share DiGSeg's dataset bases.
# Model: mmseg::_base_/models/segformer_mit-b0.py; optimizer, schedule and ImageNet-pretrained MiT-b0 as in
# mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py (8 GPUs x 2 images, 160k iterations).
_base_ = [
    'mmseg::_base_/models/segformer_mit-b0.py', '../../_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py'
]
checkpoint = 'https://download.openmmlab.com/mmsegmentation/v0.5/pretrain/segformer/mit_b0_20220624-7e0fe6dd.pth'  # noqa
model = dict(backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=checkpoint)))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={
        'pos_block': dict(decay_mult=0.),
        'norm': dict(decay_mult=0.),
        'head': dict(lr_mult=10.)
    }))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
