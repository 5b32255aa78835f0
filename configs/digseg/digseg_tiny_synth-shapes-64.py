# The embedded default: train DiGSeg-tiny on SynthShapes in a few minutes on 2 CPU cores.
#   python tools/dataset_converters/make_synth_shapes.py --out data/synth_shapes
#   python tools/train.py configs/digseg/digseg_tiny_synth-shapes-64.py
_base_ = [
    '../_base_/models/digseg_tiny.py', '../_base_/datasets/synth_shapes.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_tiny.py'
]
# --show-dir overlays: image | ground truth | prediction, enlarged to 256 px, one legend (readable at 64 px)
visualizer = dict(type='DiGSegVisualizer', vis_backends=[dict(type='LocalVisBackend')], name='visualizer')
# 2 images x every class (6) = 12 (image, class) pairs per step (model.train_cfg), 1300 steps. In 5-minute
# runs twice the steps of half the size learned more than 4 images a step; at this length the three seeds
# match the old 800 x 4 within their spread, in about 20 % less time (docs/embedded_default.md, (f))
train_dataloader = dict(batch_size=2)
max_iters = 1300
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=20, end=max_iters, eta_min=1e-5),
]
