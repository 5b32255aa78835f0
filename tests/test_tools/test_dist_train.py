"""tools/dist_train.sh and tools/dist_test.sh: torchrun, 2 CPU processes (gloo), the embedded default.

The same path as 8 GPUs with the paper configs: torchrun -> tools/train.py --launcher pytorch -> mmengine's
Runner -> MMDistributedDataParallel around DiGSeg (frozen VAE and text tower inside, requires_grad=False).
"""
import os
import os.path as osp
import re
import socket
import subprocess

import torch

from ..conftest import REPO_ROOT, TINY_CONFIG


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_script(*args):
    env = dict(os.environ, PORT=str(free_port()), OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    proc = subprocess.run(['bash', *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}'
    return out


def options(root, *extra):
    return ['--cfg-options', f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
            f'test_dataloader.dataset.data_root={root}', 'train_dataloader.batch_size=2', 'train_cfg.max_iters=2',
            'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1',
            *extra]


def check_distributed_run(out):
    assert 'Distributed training: True' in out and 'GPU number: 2' in out
    # with find_unused_parameters=False (mmengine's default), DDP fails at the 2nd iteration if a trainable
    # parameter got no gradient in the 1st: the frozen VAE and text tower must not count as such
    assert 'Iter(train) [2/2]' in out
    assert 'did not receive grad' not in out and 'find_unused_parameters' not in out


def test_dist_train_and_test_two_processes(synth_root, tmp_path):
    """With what the 512-px configs add to DDP: the denoising objective, U-Net gradient checkpointing (its
    recomputation must not trip DDP's reducer) and gradient accumulation (no_sync on the first iteration)."""
    work_dir = str(tmp_path / 'work')
    out = run_script('tools/dist_train.sh', TINY_CONFIG, '2', '--work-dir', work_dir, *options(
        synth_root, 'model.train_cfg.objective=denoising', 'model.decode_head.gradient_checkpointing=True',
        'optim_wrapper.accumulative_counts=2'))
    check_distributed_run(out)
    assert 'loss_denoise' in out and re.search(r'mIoU: [\d.]+', out)
    ckpt = torch.load(osp.join(work_dir, 'iter_2.pth'), map_location='cpu', weights_only=False)
    assert ckpt['meta']['iter'] == 2
    assert not any(k.startswith('module.') for k in ckpt['state_dict'])  # saved unwrapped: loads anywhere
    assert not any(k.startswith(('backbone.', 'text_encoder.')) for k in ckpt['state_dict'])  # frozen parts
    adam_steps = {int(s['step']) for s in ckpt['optimizer']['state'].values()}
    assert adam_steps == {1}  # two iterations, one update

    out = run_script('tools/dist_test.sh', TINY_CONFIG, osp.join(work_dir, 'iter_2.pth'), '2',
                     '--work-dir', str(tmp_path / 'test'), *options(synth_root))
    # 4 validation images split over 2 processes and gathered for one metric
    assert re.search(r'Iter\(test\) \[2/2\]', out) and re.search(r'mIoU: [\d.]+', out)
