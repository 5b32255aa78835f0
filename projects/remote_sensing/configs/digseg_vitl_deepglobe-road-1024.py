# DiGSeg (SD 2.1-base + open_clip ViT-L/14) on DeepGlobe road extraction, the paper's Table 3.
# Vocabulary: the dataset's classes, 'background' and 'road', one prompt each: the paper's "A photo of a
# [class]." (model.text_encoder.templates='paper' of the base model config).
# Training on 512x512 crops; 1024x1024 tiles are predicted with 512x512 sliding windows at stride 256
# (logits of overlapping windows averaged), so the U-Net sees the scale it was trained on.
#   bash tools/dist_train.sh projects/remote_sensing/configs/digseg_vitl_deepglobe-road-1024.py 8
#   python tools/test.py projects/remote_sensing/configs/digseg_vitl_deepglobe-road-1024.py CKPT
_base_ = [
    '../../../configs/_base_/models/digseg_sd21_vitl.py', './_base_/deepglobe_road-1024.py',
    '../../../configs/_base_/default_runtime.py', '../../../configs/_base_/schedules/schedule_80k.py'
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)  # pad the training batch to the crop size
model = dict(
    data_preprocessor=data_preprocessor,
    class_names=['background', 'road'],
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(256, 256)))
# 40k iterations x 16 images (8 GPUs x 2) ~ 130 epochs of the ~4360 training tiles
train_cfg = dict(max_iters=40000, val_interval=4000)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=1000),
    dict(type='PolyLR', power=1.0, eta_min=1e-7, by_epoch=False, begin=1000, end=40000),
]
default_hooks = dict(checkpoint=dict(interval=4000, save_best='IoU', rule='greater'))
