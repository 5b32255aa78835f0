# ADE20K-150 at 512x512 crops: MMSeg's own dataset config (folders, splits, augmentation, IoUMetric);
# only the image loader differs (pipelines_bgr8-512.py). Layout (MMSeg's, tools/dataset_converters/ade20k.py):
#   data/ade/ADEChallengeData2016/{images,annotations}/{training,validation}/*.jpg|*.png
_base_ = ['mmseg::_base_/datasets/ade20k.py', './pipelines_bgr8-512.py']

train_pipeline = {{_base_.bgr8_train_pipeline}}
test_pipeline = {{_base_.bgr8_test_pipeline}}
tta_pipeline = {{_base_.bgr8_tta_pipeline}}
# the base's dataloaders hold its own pipelines (resolved when it was read): point them at ours
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
