# Analysis only (docs/paper_recipe.md): the 49-class tiny config with OracleWordText in place of the text tower,
# per-word features as separable as a trained CLIP's. tools/train.py and tools/test.py find the module
# (their folder, tools/, is on sys.path).
_base_ = ['../../../configs/digseg/digseg_tiny_synth-shapes-many-64.py']
custom_imports = dict(imports=['analysis_tools.oracle_text'], allow_failed_imports=False)
model = dict(text_encoder=dict(type='OracleWordText'))
