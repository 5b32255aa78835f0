# The 49-class SynthShapes variant (64x64, 6 shapes x 8 textures, random colours), made by
# `python tools/dataset_converters/make_synth_shapes.py --variant many --out data/synth_shapes_many`.
# The pipelines are the 6-class ones (synth_shapes.py); captions.json next to img_dir holds a caption per image.
_base_ = ['./synth_shapes.py']
dataset_type = 'SynthShapesManyDataset'
data_root = 'data/synth_shapes_many'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
