# DiGSeg (SD 2.1-base + open_clip ViT-L/14) on PhenoBench semantic segmentation (soil, crop, weed); the
# paper shows PhenoBench qualitatively, with no number. Prompts: 'soil', 'crop' with the synonym
# 'sugar beet' (PhenoBench's crop), 'weed'. 512x512 training crops; 1024 images predicted with 512x512
# windows at stride 256.
#   bash tools/dist_train.sh projects/agriculture/configs/digseg_vitl_phenobench-1024.py 8
#   python tools/test.py projects/agriculture/configs/digseg_vitl_phenobench-1024.py CKPT
_base_ = [
    '../../../configs/_base_/models/digseg_sd21_vitl.py', './_base_/phenobench-1024.py',
    '../../../configs/_base_/default_runtime.py', '../../../configs/_base_/schedules/schedule_80k.py'
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    class_names=['soil', 'crop, sugar beet', 'weed'],
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(256, 256)))
# 1407 training images: 40k iterations x 16 crops ~ 450 epochs of random crops
train_cfg = dict(max_iters=40000, val_interval=4000)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=1000),
    dict(type='PolyLR', power=1.0, eta_min=1e-7, by_epoch=False, begin=1000, end=40000),
]
default_hooks = dict(checkpoint=dict(interval=4000))
