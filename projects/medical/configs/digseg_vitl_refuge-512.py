# DiGSeg (SD 2.1-base + open_clip ViT-L/14) on REFUGE optic disc and cup segmentation (the paper shows
# REFUGE2 qualitatively; no number is reported). MMSeg's REFUGEDataset and dataset config
# (data/REFUGE/{images,annotations}/{training,validation,test}, written by MMSeg's
# tools/dataset_converters/refuge.py): labels 0 = background, 1 = optic cup, 2 = optic disc (the rim
# around the cup). Fundus images are resized to 1634 px as in MMSeg's config and predicted with 512x512
# windows at stride 384 (the disc covers a few hundred pixels, so one window holds it whole).
#   bash tools/dist_train.sh projects/medical/configs/digseg_vitl_refuge-512.py 8
#   python tools/test.py projects/medical/configs/digseg_vitl_refuge-512.py CKPT
_base_ = [
    '../../../configs/_base_/models/digseg_sd21_vitl.py', 'mmseg::_base_/datasets/refuge.py',
    '../../../configs/_base_/default_runtime.py', '../../../configs/_base_/schedules/schedule_80k.py'
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    class_names=['background', 'optic cup', 'optic disc'],  # MMSeg's names, in label order
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(384, 384)))
train_dataloader = dict(batch_size=2)
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU', 'mDice'])
test_evaluator = val_evaluator
# 400 training images: 20k iterations x 16 crops ~ 800 epochs of random crops
train_cfg = dict(max_iters=20000, val_interval=2000)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=1000),
    dict(type='PolyLR', power=1.0, eta_min=1e-7, by_epoch=False, begin=1000, end=20000),
]
default_hooks = dict(checkpoint=dict(interval=2000, save_best='mDice', rule='greater'))
