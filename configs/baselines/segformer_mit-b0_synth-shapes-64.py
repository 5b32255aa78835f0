# SegFormer MiT-b0 from scratch on the embedded SynthShapes, side by side with DiGSeg-tiny: the same dataset
# config, runtime and optimizer (AdamW 1e-3, warm-up + cosine) as configs/digseg/digseg_tiny_synth-shapes-64.py,
# 800 iterations of 8 images (docs/get_started.md: 4,800 for DiGSeg-tiny's wall time). No pretrained weights (no downloads).
#   python tools/train.py configs/baselines/segformer_mit-b0_synth-shapes-64.py
_base_ = [
    'mmseg::_base_/models/segformer_mit-b0.py', '../_base_/datasets/synth_shapes.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_tiny.py'
]
crop_size = (64, 64)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor, decode_head=dict(num_classes=6))
