# Open vocabulary in miniature: DiGSeg-tiny never hears the name 'ring' in training (ring pixels are
# ignored: MMSeg maps classes missing from `metainfo.classes` to 255), then is tested with all six names,
# 'ring' included, through the same text path. How well an unseen name works depends on the text tower:
# the embedded tiny CLIP is randomly initialised, so its 'ring' carries no meaning (docs/user_guides/4_open_vocabulary.md).
#   python tools/train.py configs/digseg_ov/digseg_tiny_synth-shapes-unseen-ring-64.py
_base_ = '../digseg/digseg_tiny_synth-shapes-64.py'

seen_classes = ('background', 'disc', 'square', 'triangle', 'cross')
train_dataloader = dict(dataset=dict(metainfo=dict(classes=seen_classes)))
# validation and test keep the dataset's six classes: the vocabulary follows them (DiGSegVocabularyHook)
