# SegFormer MiT-b0 (MMSeg's recipe) on DiGSeg's COCO-Stuff-164k dataset config, 512x512 crops.
#   bash tools/dist_train.sh configs/baselines/segformer_mit-b0_coco-stuff164k-512.py 8
_base_ = ['./_base_/segformer_mit-b0.py', '../_base_/datasets/coco-stuff164k.py']
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor, decode_head=dict(num_classes=171))
