# Open-vocabulary test on Cityscapes (500 validation images, 19 classes) at short side 640 (2048x1024 ->
# 1280x640). MMSeg's dataset and layout (data/cityscapes, *_gtFine_labelTrainIds.png).
_base_ = ['mmseg::_base_/datasets/cityscapes.py', './ov_test-640.py']

val_dataloader = dict(dataset=dict(pipeline={{_base_.ov_test_pipeline}}))
test_dataloader = val_dataloader
train_dataloader = None  # the model is trained on another dataset (COCO-Stuff-171)
