# COCO-Stuff-164k (171 classes) at 512x512 crops: MMSeg's own dataset config; only the image loader
# differs (LoadImageAsBGR8, see ade20k.py). Labels are MMSeg's *_labelTrainIds.png (0..170, 255 ignored;
# uint8 is enough), made by tools/dataset_converters/coco_stuff164k.py of MMSeg. Layout:
#   data/coco_stuff164k/{images,annotations}/{train2017,val2017}/*.jpg|*_labelTrainIds.png
_base_ = 'mmseg::_base_/datasets/coco-stuff164k.py'

crop_size = (512, 512)
train_pipeline = [
    dict(type='LoadImageAsBGR8'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageAsBGR8'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageAsBGR8'),
    dict(type='TestTimeAug',
         transforms=[[dict(type='Resize', scale_factor=r, keep_ratio=True) for r in img_ratios],
                     [dict(type='RandomFlip', prob=0., direction='horizontal'),
                      dict(type='RandomFlip', prob=1., direction='horizontal')],
                     [dict(type='LoadAnnotations')], [dict(type='PackSegInputs')]]),
]
# the base's dataloaders hold its own pipelines (resolved when it was read): point them at ours
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
