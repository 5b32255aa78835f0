# Open-vocabulary test on ADE20K-150 (2000 validation images) at short side 640, as SAN and CAT-Seg
# evaluate. MMSeg's dataset and layout (data/ade/ADEChallengeData2016).
_base_ = ['mmseg::_base_/datasets/ade20k.py', './ov_test-640.py']

val_dataloader = dict(dataset=dict(pipeline={{_base_.ov_test_pipeline}}))
test_dataloader = val_dataloader
train_dataloader = None  # the model is trained on another dataset (COCO-Stuff-171)
