# DiGSeg (SD 2.1-base + open_clip ViT-L/14) trained on Cityscapes (19 classes, the shipped vocabulary
# with synonyms), tested on Cityscapes val; digseg_vitl_cityscapes-512x512_test-bdd100k.py tests the same
# checkpoint on BDD100K. 512x512 crops; 2048x1024 images predicted with 512x512 windows at stride 384
# (3 x 5 windows). The paper shows driving scenes qualitatively, with no closed-set number.
#   bash tools/dist_train.sh projects/driving/configs/digseg_vitl_cityscapes-512x512.py 8
#   python tools/test.py projects/driving/configs/digseg_vitl_cityscapes-512x512.py CKPT
_base_ = [
    '../../../configs/_base_/models/digseg_sd21_vitl.py', 'mmseg::_base_/datasets/cityscapes.py',
    './_base_/driving-512x512.py', '../../../configs/_base_/default_runtime.py',
    '../../../configs/_base_/schedules/schedule_80k.py'
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    class_names='cityscapes_19',
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(384, 384)))
# the base's dataloaders hold its own pipelines (resolved when it was read): point them at ours
train_dataloader = dict(batch_size=2, dataset=dict(pipeline={{_base_.driving_train_pipeline}}))
val_dataloader = dict(dataset={{_base_.cityscapes_val}})
test_dataloader = val_dataloader
