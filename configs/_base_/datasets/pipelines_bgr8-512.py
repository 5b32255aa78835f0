# The 512-px pipelines of MMSeg's ADE20K and COCO-Stuff configs with one change: LoadImageAsBGR8 turns the odd
# grayscale or 16-bit file into 8-bit colour instead of failing in normalisation. LoadAnnotations takes
# reduce_zero_label from the dataset (ADE20K: True, "other" ignored; COCO-Stuff: False).
bgr8_crop_size = (512, 512)
bgr8_train_pipeline = [
    dict(type='LoadImageAsBGR8'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=bgr8_crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
bgr8_test_pipeline = [
    dict(type='LoadImageAsBGR8'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
bgr8_img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
bgr8_tta_pipeline = [
    dict(type='LoadImageAsBGR8'),
    dict(type='TestTimeAug',
         transforms=[[dict(type='Resize', scale_factor=r, keep_ratio=True) for r in bgr8_img_ratios],
                     [dict(type='RandomFlip', prob=0., direction='horizontal'),
                      dict(type='RandomFlip', prob=1., direction='horizontal')],
                     [dict(type='LoadAnnotations')], [dict(type='PackSegInputs')]]),
]
