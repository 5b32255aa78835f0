# MMSeg's runtime (logging, visualiser, SegTTAModel, env) plus what every DiGSeg run needs.
_base_ = ['mmseg::_base_/default_runtime.py']

custom_imports = dict(imports=['mmseg_digseg'], allow_failed_imports=False)
custom_hooks = [
    dict(type='DiGSegVocabularyHook'),  # vocabulary vs dataset classes (or take the dataset's)
    dict(type='CheckFiniteLossHook'),  # stop on a NaN loss, naming the iteration
]
