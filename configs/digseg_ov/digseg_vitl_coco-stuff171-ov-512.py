# Open-vocabulary DiGSeg, training: COCO-Stuff-164k with its 171 class names (and synonyms) as prompts.
# The same checkpoint is then tested on other vocabularies, never seen in training:
#   bash tools/dist_train.sh configs/digseg_ov/digseg_vitl_coco-stuff171-ov-512.py 8
#   python tools/test.py configs/digseg_ov/digseg_vitl_ov-ade847-640.py work_dirs/digseg_vitl_coco-stuff171-ov-512/iter_80000.pth
_base_ = '../digseg/digseg_vitl_coco-stuff164k-512.py'

model = dict(class_names='coco_stuff_171')  # mmseg_digseg/datasets/vocabularies/coco_stuff_171.txt
