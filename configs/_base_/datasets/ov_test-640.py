# The open-vocabulary test protocol shared by the MMSeg-registered benchmarks (A-150, PC-59, Cityscapes):
# images at short side 640, test only. LoadAnnotations takes reduce_zero_label from the dataset.
ov_test_pipeline = [
    dict(type='LoadImageAsBGR8'),
    dict(type='Resize', scale=(2560, 640), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
