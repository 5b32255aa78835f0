# DeepGlobe road extraction: 1024x1024 tiles, background / road, in the layout of
# tools/dataset_converters/deepglobe_road.py (data/deepglobe_road/{img_dir,ann_dir}/{train,val,test}).
# Training: random scale 0.5-2x, 512x512 crops, the 8 rotations and mirrors of the square (roads have no preferred
# direction), photometric distortion. Validation and test: the whole 1024 tile, cut into sliding
# windows by the model (model.test_cfg, see the config).
dataset_type = 'DeepGlobeRoadDataset'
data_root = 'data/deepglobe_road'
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
test_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root,
                 data_prefix=dict(img_path='img_dir/test', seg_map_path='ann_dir/test'), pipeline=test_pipeline))
# Table 3 reports road IoU, precision, recall and F1. Its F1 (78.79) is not the harmonic mean of its
# precision and recall (79.93, 78.92 -> 79.42), which per-image averages give and pooled counts cannot:
# hence aggregate='image' (a tile with no road in label nor prediction is left out of the averages:
# empty_images='skip'; 'perfect' counts it as 100). The validation split chooses the threshold (saved to
# <work_dir>/binary_threshold.json under the weights searched), the test of a checkpoint uses its own.
val_evaluator = dict(type='BinarySegMetric', search_threshold=True, aggregate='image')
test_evaluator = dict(type='BinarySegMetric', threshold='from_file', aggregate='image')
