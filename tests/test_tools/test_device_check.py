"""tools/analysis_tools/device_check.py: the one command for a lent GPU, run here on the CPU with the tiny
config (--tiny) so that it cannot rot; its CUDA-only numbers (peak memory) are None there."""
import json
import os.path as osp
import sys
import time

import pytest
import torch

from ..conftest import REPO_ROOT

sys.path.insert(0, osp.join(REPO_ROOT, 'tools/analysis_tools'))
import device_check  # noqa: E402


def read(out):
    with open(osp.join(out, 'device_check.json')) as f:
        data = json.load(f)
    with open(osp.join(out, 'device_check.md')) as f:
        return data, f.read()


def test_tiny_run_measures_training_and_inference_rows(tmp_path):
    out = str(tmp_path)
    device_check.main(['--out', out, '--tiny', '--warmup', '1', '--iters', '1', '--images', '1', '--no-computed'])
    data, md = read(out)
    assert data['meta']['tiny'] and data['meta']['num_classes'] == 6 and data['meta']['size'] == 64
    training = data['training']
    assert [(r['images'], r['checkpointing']) for r in training] == [(2, True), (2, False), (1, True), (1, False)]
    for r in training:
        assert r['status'] == 'ok' and r['step_s'] > 0 and r['timed_iters'] == 1 and r['losses_finite']
        assert r['pairs_per_image'] == 6  # the tiny config trains every class of every image
        assert r['peak_gib'] is None  # no CUDA here
    inference = data['inference']
    assert [(r['mode'], r['precision'], r['mask_readout']) for r in inference] == [
        ('binary', 'bf16', 'vae'), ('binary', 'bf16', 'learned'), ('binary', 'fp32', 'vae'), ('palette', 'bf16', 'vae')]
    assert all(r['status'] == 'ok' and r['images_per_s'] > 0 for r in inference)
    assert md.count('| ok |') == 8 and '## Training (per GPU)' in md


def test_no_time_left_skips_every_row_and_still_writes(tmp_path):
    out = str(tmp_path)
    device_check.main(['--out', out, '--tiny', '--budget-s', '0', '--no-computed'])
    data, md = read(out)
    rows = data['training'] + data['inference']
    assert len(rows) == 8 and all(r['status'] == 'skipped: time budget' for r in rows)
    assert md.count('skipped: time budget') == 8


def test_budget_guard_interrupts_a_row_at_the_deadline():
    budget = device_check.Budget(0.3)
    start = time.monotonic()
    with pytest.raises(device_check.OutOfTime):
        with budget.guard():
            while time.monotonic() - start < 10:
                time.sleep(0.01)
    assert time.monotonic() - start < 2
    with pytest.raises(device_check.OutOfTime):  # past the deadline, a row does not start
        with budget.guard():
            pass


@pytest.mark.skipif(torch.cuda.is_available(), reason='the message is for machines without CUDA')
def test_full_size_run_asks_for_a_gpu(tmp_path):
    with pytest.raises(SystemExit, match='--tiny'):
        device_check.main(['--out', str(tmp_path)])
