# MMSeg's runtime (logging, visualiser, SegTTAModel, env) plus what every DiGSeg run needs.
_base_ = ['mmseg::_base_/default_runtime.py']

custom_imports = dict(imports=['mmseg_digseg'], allow_failed_imports=False)
custom_hooks = [
    dict(type='DiGSegVocabularyHook'),  # vocabulary vs dataset classes (or take the dataset's)
    dict(type='CheckFiniteLossHook'),  # stop on a NaN loss, naming the iteration
    # a binary threshold searched at validation stays with the weights it was searched for (best_*.pth
    # carries it in its meta, iter_N.pth finds it in binary_threshold.json); nothing without BinarySegMetric
    dict(type='BinaryThresholdHook'),
]
