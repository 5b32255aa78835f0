# Mask2Former R50 on ADE20K-150 at 512x512: MMSeg's own config unchanged (its dataset config is MMSeg's
# ADE20K one, which DiGSeg's configs/_base_/datasets/ade20k.py extends; its train pipeline is Mask2Former's
# scale-jitter recipe). Its model is written inline there, so it cannot take our dataset base as a sibling.
#   bash tools/dist_train.sh configs/baselines/mask2former_r50_ade20k-512.py 8
_base_ = ['mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py']
