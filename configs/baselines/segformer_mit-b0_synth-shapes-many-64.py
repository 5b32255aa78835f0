# SegFormer MiT-b0 from scratch on the 49-class SynthShapes, side by side with
# configs/digseg/digseg_tiny_synth-shapes-many-64.py (docs/paper_recipe.md: equal wall time).
#   python tools/train.py configs/baselines/segformer_mit-b0_synth-shapes-many-64.py
_base_ = ['./segformer_mit-b0_synth-shapes-64.py']
dataset_type, data_root = 'SynthShapesManyDataset', 'data/synth_shapes_many'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
model = dict(decode_head=dict(num_classes=49))
