# The BDD100K-trained model tested on Cityscapes val (same 19 classes and train ids): cross-domain.
#   python tools/test.py projects/driving/configs/digseg_vitl_bdd100k-512x512_test-cityscapes.py \
#       work_dirs/digseg_vitl_bdd100k-512x512/iter_80000.pth
_base_ = ['./digseg_vitl_bdd100k-512x512.py']
test_dataloader = dict(dataset={{_base_.cityscapes_val}})
