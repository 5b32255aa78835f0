# Open-vocabulary test on ADE20K-150 (2000 validation images) at short side 640, as SAN and CAT-Seg
# evaluate. MMSeg's dataset and layout (data/ade/ADEChallengeData2016); test only.
_base_ = 'mmseg::_base_/datasets/ade20k.py'

test_pipeline = [
    dict(type='LoadImageAsBGR8'),
    dict(type='Resize', scale=(2560, 640), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
train_dataloader = None  # the model is trained on another dataset (COCO-Stuff-171)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
