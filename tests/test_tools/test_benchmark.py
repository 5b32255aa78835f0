"""tools/benchmark.py: every setting in its own process, a table, a JSON and a plot. The tool itself runs as a
script in this process (its settings still get their own processes)."""
import json

from ..conftest import TINY_CONFIG
from .test_train_test import run_script


def test_benchmark_measures_each_setting(tmp_path, capsys, monkeypatch):
    out = run_script(capsys, monkeypatch, 'tools/benchmark.py', TINY_CONFIG, '--vocab-sizes', '5',
                     '--image-size', '32', '40', '--modes', 'labels', '--topk', '3', '--repeats', '1',
                     '--device', 'cpu', '--out-dir', str(tmp_path))
    results = json.loads((tmp_path / 'benchmark.json').read_text())
    # 5 classes, without and with top-3 pruning
    assert [(r['vocab_size'], r['topk']) for r in results] == [(5, None), (5, 3)]
    for r in results:
        assert r['mode'] == 'labels' and r['image_size'] == [32, 40] and r['device'] == 'cpu'
        assert r['seconds_per_image'] > 0 and r['peak_mib_above_model'] >= 0
    assert (tmp_path / 'benchmark.png').stat().st_size > 10_000
    assert '5 classes' in out


def test_table4_measures_every_mode_and_preset_and_writes_the_doc(synth_root, tmp_path, capsys, monkeypatch):
    import torch
    from mmseg_digseg.apis import init_digseg
    from ..conftest import REPO_ROOT
    classes = ('background', 'disc', 'square', 'triangle', 'cross', 'ring')
    palette_config = f'{REPO_ROOT}/configs/digseg/digseg-palette_tiny_synth-shapes-64.py'
    checkpoints = {}
    for name, config in (('binary', TINY_CONFIG), ('palette', palette_config)):
        checkpoints[name] = str(tmp_path / f'{name}.pth')
        torch.save(dict(state_dict=init_digseg(config).state_dict(), meta=dict(dataset_meta=dict(classes=classes))),
                   checkpoints[name])
    doc = tmp_path / 'benchmarks.md'
    doc.write_text('# Benchmarks\n\nKept text.\n\n<!-- table4:begin -->\nold\n<!-- table4:end -->\n\nAfter.\n')
    out = run_script(capsys, monkeypatch, 'tools/benchmark.py', TINY_CONFIG, '--checkpoint', checkpoints['binary'],
                     '--table4', '--palette-config', palette_config, '--palette-checkpoint', checkpoints['palette'],
                     '--data-root', synth_root, '--presets', '1x1', '4x2', '--vocab-sizes', '2', '150',
                     '--max-images', '2', '--repeats', '1', '--device', 'cpu', '--out-dir', str(tmp_path / 'out'),
                     '--doc', str(doc))
    results = json.loads((tmp_path / 'out' / 'table4.json').read_text())
    modes = ['binary, VAE decode', 'binary, learned readout', 'palette']
    assert [(r['mode'], r['preset']) for r in results['table4']] == [(m, p) for m in modes for p in ('1x1', '4x2')]
    for r in results['table4']:
        assert 0 <= r['mIoU'] <= 100 and r['images_per_s'] > 0 and r['images'] == 2
    assert [(r['mode'], r['classes']) for r in results['vocabulary']] == [(m, n) for m in modes for n in (2, 150)]
    assert results['floor_seconds'] > 0 and results['half']['mode'] == 'binary, VAE decode, bf16'
    # counted, not timed: the learned readout needs at least 3x fewer FLOPs than the full decode
    assert [r['model'] for r in results['flops']] == ['DiGSeg-tiny (64x64)', 'SD 2.1-base (512x512)']
    assert all(r['decode'] >= 3 * r['readout'] > 0 for r in results['flops'])
    text = doc.read_text()
    assert text.startswith('# Benchmarks\n\nKept text.') and text.endswith('After.\n') and 'old' not in text
    assert '| 4x2 |' in text and 'python tools/benchmark.py' in text and '150 classes' in text
    assert (tmp_path / 'out' / 'table4.png').stat().st_size > 10_000
    assert 'mIoU' in out
