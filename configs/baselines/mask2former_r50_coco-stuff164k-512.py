# Mask2Former R50 (MMSeg's ADE20K recipe) on COCO-Stuff-164k at 512x512: the dataset fields below are those
# of MMSeg's coco-stuff164k config (as in DiGSeg's configs/_base_/datasets/coco-stuff164k.py), with
# Mask2Former's own scale-jitter train pipeline.
#   bash tools/dist_train.sh configs/baselines/mask2former_r50_coco-stuff164k-512.py 8
_base_ = ['./mask2former_r50_ade20k-512.py']
num_classes = 171
crop_size = (512, 512)
dataset_type = 'COCOStuffDataset'
data_root = 'data/coco_stuff164k'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomChoiceResize', scales=[int(512 * x * 0.1) for x in range(5, 21)],
         resize_type='ResizeShortestEdge', max_size=2048),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(dataset=dict(
    type=dataset_type, data_root=data_root, pipeline=train_pipeline,
    data_prefix=dict(img_path='images/train2017', seg_map_path='annotations/train2017')))
val_dataloader = dict(dataset=dict(
    type=dataset_type, data_root=data_root, pipeline=test_pipeline,
    data_prefix=dict(img_path='images/val2017', seg_map_path='annotations/val2017')))
test_dataloader = val_dataloader
model = dict(decode_head=dict(
    num_classes=num_classes, loss_cls=dict(class_weight=[1.0] * num_classes + [0.1])))
