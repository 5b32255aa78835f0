"""FSDP through mmengine's FlexibleRunner: 2 CPU processes (gloo) train DiGSeg-tiny with
configs/digseg/digseg_tiny_synth-shapes-64_fsdp.py (DiGSegFSDPStrategy), save a full checkpoint, and a
second runner in the same processes resumes from it. One torchrun for both runs keeps the test short."""
import json
import os
import os.path as osp
import subprocess
import sys

import torch

from ..conftest import REPO_ROOT
from .test_dist_train import free_port

FSDP_CONFIG = osp.join(REPO_ROOT, 'configs/digseg/digseg_tiny_synth-shapes-64_fsdp.py')

# what tools/train.py does, twice: train 1 iteration and save; resume and train the 2nd
SCRIPT = r"""
import json, sys
import torch.distributed as dist
from mmengine.config import Config
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
import mmseg_digseg
from mmseg.registry import RUNNERS
from mmseg_digseg.engine import finish_distributed, setup_cpu_distributed

config, root, work_dir = sys.argv[1:4]
report = {}
for max_iters, resume in ((1, False), (2, True)):
    cfg = Config.fromfile(config)
    cfg.launcher = 'pytorch'
    setup_cpu_distributed(cfg, 'pytorch')
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = root
    cfg.merge_from_dict({'train_dataloader.batch_size': 1, 'train_cfg.max_iters': max_iters,
                         'default_hooks.checkpoint.interval': 1, 'default_hooks.logger.interval': 1})
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.work_dir, cfg.resume = work_dir, resume
    cfg.experiment_name = f'run{max_iters}'
    runner = RUNNERS.build(cfg)
    runner.train()
    model = runner.model
    inner = model.module
    report[f'run{max_iters}'] = dict(
        wrapper=type(model).__name__, units=len(FSDP.fsdp_modules(model)),
        unet_local=sum(p.numel() for p in inner.decode_head.parameters()),
        vae_local=sum(p.numel() for p in inner.backbone.parameters()),
        frozen_in_fsdp=any(isinstance(m, FSDP) for part in (inner.backbone, inner.text_encoder)
                           for m in part.modules()))
print(f'REPORT{dist.get_rank()}', json.dumps(report), flush=True)
finish_distributed()
"""


def test_fsdp_trains_saves_and_resumes_on_two_cpu_processes(synth_root, tiny_model, tmp_path):
    work_dir = str(tmp_path / 'work')
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    proc = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
                           f'--master_port={free_port()}', '--no-python', sys.executable, '-c',
                           SCRIPT, FSDP_CONFIG, synth_root, work_dir],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    reports = [json.loads(out.split(f'REPORT{rank}', 1)[1].split('\n', 1)[0]) for rank in (0, 1)]
    assert 'Iter(train) [1/1]' in out and 'resumed epoch: 0, iter: 1' in out and 'Iter(train) [2/2]' in out
    for run in ('run1', 'run2'):
        first, second = reports[0][run], reports[1][run]
        assert first['wrapper'] == 'MMFullyShardedDataParallel' and first['units'] > 1  # U-Net blocks wrapped
        assert not first['frozen_in_fsdp']  # VAE and text tower stay whole on every process
        full_head = sum(p.numel() for p in tiny_model.decode_head.parameters())
        full_vae = sum(p.numel() for p in tiny_model.backbone.parameters())
        # the head's parameters are split between the processes; the VAE is whole on each
        assert first['unet_local'] < full_head and second['unet_local'] < full_head
        assert first['unet_local'] + second['unet_local'] == full_head
        assert first['vae_local'] == second['vae_local'] == full_vae
    # checkpoints hold the full, unwrapped state dict without the frozen parts (as DDP's: they load anywhere)
    expected = set(tiny_model.state_dict())
    for iters in (1, 2):
        ckpt = torch.load(osp.join(work_dir, f'iter_{iters}.pth'), map_location='cpu', weights_only=False)
        assert ckpt['meta']['iter'] == iters
        assert set(ckpt['state_dict']) == expected
    tiny_model.load_state_dict(ckpt['state_dict'])  # loads into the plain model
    # the resumed run continued AdamW's states: two updates in all
    steps = {int(s['step']) for s in ckpt['optimizer']['state'].values()}
    assert steps == {2}
