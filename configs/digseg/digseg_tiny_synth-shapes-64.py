# The embedded default: train DiGSeg-tiny on SynthShapes in a few minutes on 2 CPU cores.
#   python tools/dataset_converters/make_synth_shapes.py --out data/synth_shapes
#   python tools/train.py configs/digseg/digseg_tiny_synth-shapes-64.py
_base_ = [
    '../_base_/models/digseg_tiny.py', '../_base_/datasets/synth_shapes.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_tiny.py'
]
# --show-dir overlays: image | ground truth | prediction, enlarged to 256 px, one legend (readable at 64 px)
visualizer = dict(type='DiGSegVisualizer', vis_backends=[dict(type='LocalVisBackend')], name='visualizer')
# 4 images x every class (6) = 24 (image, class) pairs per step (model.train_cfg)
train_dataloader = dict(batch_size=4)
