# DiGSeg: Stable Diffusion 2.1-base + open_clip ViT-L/14 text tower on COCO-Stuff-164k (171 classes), 512x512 crops,
# 8 GPUs x 2 images, 80k iterations, bf16 (docs/zoo.md: targets, memory, local weights).
#   bash tools/dist_train.sh configs/digseg/digseg_vitl_coco-stuff164k-512.py 8
#   bash tools/dist_test.sh configs/digseg/digseg_vitl_coco-stuff164k-512.py CKPT 8 --cfg-options model.test_cfg.preset=8x2
_base_ = [
    '../_base_/models/digseg_sd21_vitl.py', '../_base_/datasets/coco-stuff164k.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_80k.py'
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)  # pad the training batch to the crop size
model = dict(data_preprocessor=data_preprocessor)
