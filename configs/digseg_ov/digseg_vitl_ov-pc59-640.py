# Open-vocabulary test on PASCAL-Context-59 with the COCO-Stuff-171 model (digseg_vitl_coco-stuff171-ov-512.py):
# the target dataset's class names (with synonyms) are the prompts; images at short side 640.
#   python tools/test.py configs/digseg_ov/digseg_vitl_ov-pc59-640.py CKPT [--cfg-options model.test_cfg.preset=4x2]
_base_ = ['../_base_/models/digseg_sd21_vitl.py', '../_base_/datasets/ov_pc59-640.py', '../_base_/default_runtime.py']

model = dict(class_names='pascal_context_59')  # mmseg_digseg/datasets/vocabularies/pascal_context_59.txt
