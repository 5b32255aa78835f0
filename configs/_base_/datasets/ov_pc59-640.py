# Open-vocabulary test on PASCAL-Context-59 (5105 validation images) at short side 640. MMSeg's dataset
# and layout (data/VOCdevkit/VOC2010, MMSeg's tools/dataset_converters/pascal_context.py).
_base_ = ['mmseg::_base_/datasets/pascal_context_59.py', './ov_test-640.py']

val_dataloader = dict(dataset=dict(pipeline={{_base_.ov_test_pipeline}}))
test_dataloader = val_dataloader
train_dataloader = None  # the model is trained on another dataset (COCO-Stuff-171)
