# DiGSeg-tiny in palette mode on the 49-class SynthShapes: one colour-coded mask per image whatever the
# vocabulary, beside binary mode's per-class masks (docs/benchmarks.md).
#   python tools/dataset_converters/make_synth_shapes.py --variant many --out data/synth_shapes_many
#   python tools/train.py configs/digseg/digseg-palette_tiny_synth-shapes-many-64.py
_base_ = ['./digseg-palette_tiny_synth-shapes-64.py']
dataset_type, data_root = 'SynthShapesManyDataset', 'data/synth_shapes_many'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
