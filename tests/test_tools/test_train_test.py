"""End to end through the tools and mmengine's Runner on the embedded default (few iterations).

The tools run as scripts (``runpy``, their ``__main__``) in this process: a fresh interpreter per run would
spend most of the test importing torch, diffusers and MMSeg. ``run_tool`` keeps a real subprocess for what
must be one (a clean exit before the heavy imports)."""
import glob
import os
import os.path as osp
import re
import runpy
import subprocess
import sys

import torch

from ..conftest import REPO_ROOT, TINY_CONFIG


def run_tool(*args, check=True):
    # the caller's OMP_NUM_THREADS (default 2): a run on one thread stays on one thread
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '2'))
    proc = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    out = proc.stdout + proc.stderr
    if check:
        assert proc.returncode == 0, out[-4000:]
    return out


def _forget_visualizers():
    """What a fresh process starts without: mmengine keeps visualizers by name (MMSeg's configs all say
    'visualizer') and hands a later Runner the earlier one, with its save_dir, instead of building a new one."""
    from mmengine.visualization import Visualizer
    classes = [Visualizer]
    while classes:
        cls = classes.pop()
        cls._instance_dict.clear()
        classes.extend(cls.__subclasses__())


def run_script(capsys, monkeypatch, script, *args):
    """``python SCRIPT ARGS`` from the repository root, as ``__main__`` in this process; what it printed."""
    _forget_visualizers()
    monkeypatch.setattr(sys, 'argv', [script, *args])
    monkeypatch.chdir(REPO_ROOT)
    capsys.readouterr()
    runpy.run_path(script, run_name='__main__')
    captured = capsys.readouterr()
    return captured.out + captured.err


def data_options(root, max_iters):
    return ['--cfg-options', f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
            f'test_dataloader.dataset.data_root={root}', 'train_dataloader.batch_size=2',
            f'train_cfg.max_iters={max_iters}', f'train_cfg.val_interval={max_iters}',
            'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1']


def test_train_checkpoint_resume_and_test(synth_root, tmp_path, capsys, monkeypatch):
    def run(*args):
        return run_script(capsys, monkeypatch, *args)

    work_dir = str(tmp_path / 'work')
    out = run('tools/train.py', TINY_CONFIG, '--work-dir', work_dir, *data_options(synth_root, 4))
    assert 'mIoU' in out
    ckpt = torch.load(osp.join(work_dir, 'iter_4.pth'), map_location='cpu', weights_only=False)
    assert ckpt['meta']['iter'] == 4
    assert list(ckpt['meta']['dataset_meta']['classes'])[:2] == ['background', 'disc']  # for init_model
    assert ckpt['state_dict']['decode_head.unet.conv_in.weight'].shape[1] == 32  # [image, mask] latents, 16 each
    # only what trains is saved: the frozen VAE and text tower come from their own weights
    assert not [k for k in ckpt['state_dict'] if k.startswith(('backbone.', 'text_encoder.'))]

    # killed after iteration 4: resume continues from the last checkpoint, optimizer state included
    out = run('tools/train.py', TINY_CONFIG, '--work-dir', work_dir, '--resume', *data_options(synth_root, 6))
    assert re.search(r'resumed', out, re.IGNORECASE) and 'Iter(train) [5/6]' in out
    ckpt6 = torch.load(osp.join(work_dir, 'iter_6.pth'), map_location='cpu', weights_only=False)
    adam_steps = {int(s['step']) for s in ckpt6['optimizer']['state'].values()}
    assert adam_steps == {6}

    checkpoint = osp.join(work_dir, 'iter_6.pth')
    show_dir = str(tmp_path / 'show')
    out = run('tools/test.py', TINY_CONFIG, checkpoint, '--work-dir', str(tmp_path / 'test'),
                   '--show-dir', show_dir, *data_options(synth_root, 6))
    miou = float(re.search(r'mIoU: ([\d.]+)', out).group(1))
    assert 0 <= miou <= 100
    assert len(glob.glob(osp.join(show_dir, '**', '*.png'), recursive=True)) == 4  # one per val image

    out = run('tools/test.py', TINY_CONFIG, checkpoint, '--tta', '--work-dir', str(tmp_path / 'tta'),
                   *data_options(synth_root, 6))
    assert re.search(r'mIoU: ([\d.]+)', out)
    # the cost is announced before testing: 2 flips x 6 classes
    assert 'Test: 4 images, 6 classes, 2 view(s), ensemble 1 x 1 step(s): 12 U-Net passes and 12 VAE decodes' in out


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    out = run_tool('tools/test.py', TINY_CONFIG, str(tmp_path / 'nope.pth'), check=False)
    assert 'does not exist' in out and 'Traceback' not in out
