# Open-vocabulary test on ADE20K-Full (847 classes, 2000 validation images) at short side 640.
# Layout of tools/dataset_converters/ade20k_full.py (= Mask2Former's): data/ade/ADE20K_2021_17_01/
# {images,annotations}_detectron2/validation. Labels are uint16 train ids: LoadWideAnnotations keeps
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
    dataset=dict(type='ADE20KFull847Dataset', data_root='data/ade', pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'], ignore_index=65535)
test_evaluator = val_evaluator
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
