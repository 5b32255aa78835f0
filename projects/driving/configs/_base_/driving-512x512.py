# Driving scenes at Cityscapes' scale: MMSeg's Cityscapes and BDD100K dataset configs (folders, splits,
# IoUMetric) with DiGSeg's 512x512 training crops. Both datasets label the same 19 classes with the same
# train ids, so a model trained on one is tested on the other unchanged.
#   Cityscapes: data/cityscapes/{leftImg8bit,gtFine}/{train,val}   (MMSeg's tools/dataset_converters/cityscapes.py)
#   BDD100K:    data/bdd100k/images/10k/{train,val}, data/bdd100k/labels/sem_seg/masks/{train,val}
#               (the official bdd100k_images_10k.zip and bdd100k_sem_seg_labels_trainval.zip, extracted)
# Test images are resized to 1024 px height (Cityscapes 2048x1024 stays as is, BDD100K 1280x720 becomes
# 1820x1024, the scale the model trained at) and predicted in sliding windows (model.test_cfg).
driving_crop_size = (512, 512)
driving_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(2048, 1024), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=driving_crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
driving_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 1024), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
cityscapes_val = dict(
    type='CityscapesDataset',
    data_root='data/cityscapes/',
    data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
    pipeline=driving_test_pipeline)
bdd100k_val = dict(
    type='BDD100KDataset',
    data_root='data/bdd100k/',
    data_prefix=dict(img_path='images/10k/val', seg_map_path='labels/sem_seg/masks/val'),
    pipeline=driving_test_pipeline)
