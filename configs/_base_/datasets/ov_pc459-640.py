# Open-vocabulary test on PASCAL-Context-459 (the 5104 validation images of CAT-Seg's list) at short side 640.
# Layout of tools/dataset_converters/pascal_context_459.py (= CAT-Seg's): data/VOCdevkit/VOC2010/
# {JPEGImages, annotations_detectron2/pc459_val}. 16-bit labels, as ADE20K-Full's: the same pipeline.
_base_ = './ov_ade847-640.py'

val_dataloader = dict(dataset=dict(type='PascalContext459Dataset', data_root='data'))
test_dataloader = val_dataloader
