# Open-vocabulary test on PASCAL-Context-459 (the 5104 validation images of CAT-Seg's list) at short side 640.
# Layout of tools/dataset_converters/pascal_context_459.py (= CAT-Seg's): data/VOCdevkit/VOC2010/
# {JPEGImages, annotations_detectron2/pc459_val}. Labels are uint16 train ids: LoadWideAnnotations keeps
# them (MMSeg's loader casts to uint8) and 65535, not 255, is "unlabeled".
test_pipeline = [
    dict(type='LoadImageAsBGR8'),
    dict(type='Resize', scale=(2560, 640), keep_ratio=True),
    dict(type='LoadWideAnnotations'),
    dict(type='PackSegInputs'),
]
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='PascalContext459Dataset', data_root='data', pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'], ignore_index=65535)
test_evaluator = val_evaluator
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
