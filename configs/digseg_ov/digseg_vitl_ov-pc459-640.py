# Open-vocabulary test on PASCAL-Context-459 with the COCO-Stuff-171 model (digseg_vitl_coco-stuff171-ov-512.py):
# the target dataset's class names (with synonyms) are the prompts; images at short side 640.
#   python tools/test.py configs/digseg_ov/digseg_vitl_ov-pc459-640.py CKPT [--cfg-options model.test_cfg.preset=4x2]
_base_ = ['../_base_/models/digseg_sd21_vitl.py', '../_base_/datasets/ov_pc459-640.py', '../_base_/default_runtime.py']

# A large vocabulary: label maps are built chunk by chunk, so memory does not grow with the classes (the
# (C, H, W) logits would take 1.9 GB per copy for 847 classes at 640x853); model.test_cfg.topk_classes=K
# denoises only the K classes with the best one-step pre-score.
model = dict(
    class_names='pascal_context_459',
    test_cfg=dict(return_logits=False, class_chunk_size=16))
