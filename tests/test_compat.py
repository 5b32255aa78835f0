"""MMSeg's own entry points in the environment tools/install.sh makes (transformers 5 next to mmpretrain 1.2.0),
run in a fresh interpreter that never imports mmseg_digseg: the start-up file that the install writes into
site-packages (mmseg_digseg/compat.py) is what lets MMSeg's models import there."""
import os
import site
import subprocess
import sys

from mmseg_digseg.compat import STARTUP_FILE, startup_line, write_startup_file

MMSEG_ALONE = r'''
import sys

first_finder = type(sys.meta_path[0]).__name__  # the start-up file's hook (checked at the end)
assert 'transformers' not in sys.modules  # it waits until mmdet or mmpretrain is imported

import numpy as np
import torch
from mmengine.hub import get_config
from mmseg.apis import inference_model, init_model
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmseg.utils import register_all_modules

register_all_modules()
torch.manual_seed(0)
images = torch.rand(1, 3, 64, 64)

# SegFormer-B0 from MMSeg's own config (no ImageNet weights: nothing is downloaded)
segformer_cfg = get_config('mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py')
segformer_cfg.model.backbone.init_cfg = None
segformer = MODELS.build(segformer_cfg.model).eval()
with torch.no_grad():
    assert segformer(images, mode='tensor').shape == (1, 150, 16, 16)

# Mask2Former-R50 (MMSeg's head on mmdet's pixel decoder, which brings mmpretrain and transformers)
mask2former_cfg = get_config('mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py')
mask2former_cfg.model.backbone.init_cfg = None
mask2former = MODELS.build(mask2former_cfg.model).eval()
data = dict(inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)],
            data_samples=[SegDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64)))])
pred = mask2former.test_step(data)[0].pred_sem_seg.data
assert pred.shape == (1, 64, 64) and 0 <= pred.min() and pred.max() < 150, (pred.shape, pred.unique())

# mmseg.apis.init_model on a SegFormer checkpoint whose head predicts class 7 everywhere
segformer.decode_head.conv_seg.weight.data.zero_()
segformer.decode_head.conv_seg.bias.data.zero_()
segformer.decode_head.conv_seg.bias.data[7] = 1.0
classes = tuple(f'class{i}' for i in range(150))
torch.save({'state_dict': segformer.state_dict(),
            'meta': {'dataset_meta': {'classes': classes, 'palette': [[i, i, i] for i in range(150)]}}},
           'segformer.pth')
segformer_cfg.test_pipeline[1].scale = (80, 48)  # ADE20K's resize to 512 rows, kept to the image's size here
model = init_model(segformer_cfg, 'segformer.pth', device='cpu')
assert model.dataset_meta['classes'] == classes
result = inference_model(model, np.random.RandomState(0).randint(0, 256, (48, 80, 3), dtype=np.uint8))
assert result.pred_sem_seg.data.shape == (1, 48, 80)
assert (result.pred_sem_seg.data == 7).all(), result.pred_sem_seg.data.unique()

assert first_finder == 'PatchTransformersOnImport', first_finder
import transformers.modeling_utils
assert transformers.modeling_utils.apply_chunking_to_forward.__module__ == 'transformers.pytorch_utils'
assert 'mmseg_digseg' not in sys.modules, 'the test must not import mmseg_digseg'
print('MMSEG ALONE OK')
'''


def test_mmseg_entry_points_without_importing_mmseg_digseg(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '2'))
    proc = subprocess.run([sys.executable, '-c', MMSEG_ALONE], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and 'MMSEG ALONE OK' in proc.stdout, (
        f'{out[-4000:]}\nMMSeg does not work on its own here: run `bash tools/install.sh`, which writes '
        f'{STARTUP_FILE} into site-packages')


def test_startup_file_installs_the_hook_and_does_nothing_once_compat_is_gone(tmp_path, capsys):
    """The .pth files processed by site as at interpreter start, in this process with the hook taken out."""
    installed, uninstalled = tmp_path / 'installed', tmp_path / 'uninstalled'
    installed.mkdir()
    uninstalled.mkdir()
    write_startup_file(str(installed))
    (uninstalled / STARTUP_FILE).write_text(startup_line(str(tmp_path / 'gone/compat.py')) + '\n')
    saved_meta_path, saved_path = list(sys.meta_path), list(sys.path)
    try:
        sys.meta_path[:] = [f for f in saved_meta_path if type(f).__name__ != 'PatchTransformersOnImport']
        without_hook = list(sys.meta_path)
        site.addsitedir(str(uninstalled))
        assert sys.meta_path == without_hook
        site.addsitedir(str(installed))
        assert type(sys.meta_path[0]).__name__ == 'PatchTransformersOnImport' and sys.meta_path[1:] == without_hook
        assert not sys.meta_path[0].patched
    finally:
        sys.meta_path[:], sys.path[:] = saved_meta_path, saved_path
    assert capsys.readouterr().err == ''  # site reports a failing .pth line on stderr
