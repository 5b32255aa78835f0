# COCO-Stuff-164k (171 classes) at 512x512 crops: MMSeg's own dataset config; only the image loader
# differs (pipelines_bgr8-512.py). Labels are MMSeg's *_labelTrainIds.png (0..170, 255 ignored;
# uint8 is enough), made by tools/dataset_converters/coco_stuff164k.py of MMSeg. Layout:
#   data/coco_stuff164k/{images,annotations}/{train2017,val2017}/*.jpg|*_labelTrainIds.png
_base_ = ['mmseg::_base_/datasets/coco-stuff164k.py', './pipelines_bgr8-512.py']

train_pipeline = {{_base_.bgr8_train_pipeline}}
test_pipeline = {{_base_.bgr8_test_pipeline}}
tta_pipeline = {{_base_.bgr8_tta_pipeline}}
# the base's dataloaders hold its own pipelines (resolved when it was read): point them at ours
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
