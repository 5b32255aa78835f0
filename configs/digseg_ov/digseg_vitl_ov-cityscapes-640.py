# Open-vocabulary test on Cityscapes (19 classes) with the COCO-Stuff-171 model (digseg_vitl_coco-stuff171-ov-512.py):
# the target dataset's class names (with synonyms) are the prompts; images at short side 640.
#   python tools/test.py configs/digseg_ov/digseg_vitl_ov-cityscapes-640.py CKPT [--cfg-options model.test_cfg.preset=4x2]
_base_ = ['../_base_/models/digseg_sd21_vitl.py', '../_base_/datasets/ov_cityscapes-640.py', '../_base_/default_runtime.py']

model = dict(class_names='cityscapes_19')  # mmseg_digseg/datasets/vocabularies/cityscapes_19.txt
