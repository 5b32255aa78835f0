# The Cityscapes-trained model tested on BDD100K val (same 19 classes and train ids): cross-domain.
#   python tools/test.py projects/driving/configs/digseg_vitl_cityscapes-512x512_test-bdd100k.py \
#       work_dirs/digseg_vitl_cityscapes-512x512/iter_80000.pth
_base_ = ['./digseg_vitl_cityscapes-512x512.py']
test_dataloader = dict(dataset={{_base_.bdd100k_val}})
