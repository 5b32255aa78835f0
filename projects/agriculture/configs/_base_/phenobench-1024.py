# PhenoBench semantic segmentation: 1024x1024 UAV images, soil / crop / weed, in the layout of
# tools/dataset_converters/phenobench.py (data/phenobench/{img_dir,ann_dir}/{train,val}; the official test
# labels are hidden, so val is also the test split here). Training: random scale 0.5-2x, 512x512 crops,
# 90-degree rotations and mirrors (nadir views), photometric distortion. Test: the whole image in sliding windows.
dataset_type = 'PhenoBenchDataset'
data_root = 'data/phenobench'
crop_size = (512, 512)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(1024, 1024), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.95),
    # a random multiple of 90 degrees and a mirror, then RandomFlip: all 8 symmetries of the square
    dict(type='RandomRotFlip', rotate_prob=0.0, flip_prob=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root,
                 data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root,
                 data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
