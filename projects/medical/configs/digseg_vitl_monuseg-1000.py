# DiGSeg (SD 2.1-base + open_clip ViT-L/14) on MoNuSeg nuclei, the paper's Table 5 (first two rows).
# Vocabulary: 'background' and 'nucleus' (with the synonym 'cell nucleus' averaged into the pooled
# embedding). 512x512 training crops; 1000x1000 tiles predicted with 512x512 windows at stride 256
# (windows at 0, 256 and 488 in each direction).
#   bash tools/dist_train.sh projects/medical/configs/digseg_vitl_monuseg-1000.py 8
#   python tools/test.py projects/medical/configs/digseg_vitl_monuseg-1000.py CKPT
_base_ = [
    '../../../configs/_base_/models/digseg_sd21_vitl.py', './_base_/monuseg-1000.py',
    '../../../configs/_base_/default_runtime.py', '../../../configs/_base_/schedules/schedule_80k.py'
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    class_names=['background', 'nucleus, cell nucleus'],
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(256, 256)))
# 24 training tiles: 10k iterations x 16 crops is ~6700 passes over each tile at random scale and crop
train_cfg = dict(max_iters=10000, val_interval=1000)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=500),
    dict(type='PolyLR', power=1.0, eta_min=1e-7, by_epoch=False, begin=500, end=10000),
]
default_hooks = dict(checkpoint=dict(interval=1000, save_best='Dice', rule='greater'))
