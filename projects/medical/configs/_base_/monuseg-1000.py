# MoNuSeg: 1000x1000 H&E tiles, background / nucleus, in the layout of tools/dataset_converters/monuseg.py
# (data/monuseg/{img_dir,ann_dir}/{train,val,test}: 24 / 6 training tiles, the official 14 test tiles).
# Training: random scale 0.5-2x, 512x512 crops, 90-degree rotations and mirrors (histology has no orientation),
# photometric distortion (stain variation). Validation and test: the whole tile, in sliding windows.
dataset_type = 'MoNuSegDataset'
data_root = 'data/monuseg'
crop_size = (512, 512)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(1000, 1000), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
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
test_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root,
                 data_prefix=dict(img_path='img_dir/test', seg_map_path='ann_dir/test'), pipeline=test_pipeline))
# Table 5 reports Dice and "mIoU"; its mIoU is Dice / (2 - Dice) to the last digit in all three rows
# (78.27 -> 64.29, 79.84 -> 66.44, 84.56 -> 73.25), i.e. the nucleus IoU of pooled counts: our `Dice` and
# `IoU` with aggregate='dataset'. The validation split chooses the threshold (saved to
# <work_dir>/binary_threshold.json under the weights searched: Table 5's "threshold search" row), the test
# of a checkpoint uses its own;
# `Dice_default` / `IoU_default` of the validation run are the model's own argmax (the first row).
val_evaluator = dict(type='BinarySegMetric', search_threshold=True, aggregate='dataset')
test_evaluator = dict(type='BinarySegMetric', threshold='from_file', aggregate='dataset')
