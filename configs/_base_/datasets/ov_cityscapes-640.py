# Open-vocabulary test on Cityscapes (500 validation images, 19 classes) at short side 640
# (2048x1024 -> 1280x640). MMSeg's dataset and layout (data/cityscapes, *_gtFine_labelTrainIds.png); test only.
_base_ = 'mmseg::_base_/datasets/cityscapes.py'

test_pipeline = [
    dict(type='LoadImageAsBGR8'),
    dict(type='Resize', scale=(2560, 640), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
train_dataloader = None  # the model is trained on another dataset (COCO-Stuff-171)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
