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


def test_table4_reports_a_vocabulary_palette_mode_refuses_instead_of_failing(monkeypatch):
    """ADE20K-Full's 847 names are too many for the palette's colours: that row says so, the others are timed."""
    import torch
    from mmseg_digseg.apis import init_digseg
    from ..conftest import REPO_ROOT
    monkeypatch.syspath_prepend(f'{REPO_ROOT}/tools')
    from benchmark_table4 import markdown, vocabulary_rows
    model = init_digseg(f'{REPO_ROOT}/configs/digseg/digseg-palette_tiny_synth-shapes-64.py').eval()
    model.min_colour_distance = 400.0  # black and white are 441.7 apart (8-bit units); any third colour is closer
    names = [f'class {i}' for i in range(3)]
    rows = vocabulary_rows('palette', model, torch.zeros(1, 3, 32, 32), names, [2, 3], repeats=1)
    assert [(r['classes'], r['seconds'] is None) for r in rows] == [(2, False), (3, True)]
    assert rows[0]['seconds'] > 0 and rows[1]['refused'].startswith('3 classes are too many for palette mode')
    table = dict(mode='palette', preset='1x1', mIoU=50.0, seconds=0.1, images_per_s=10.0)
    results = dict(floor_seconds=0.05, machine='x', date='d', num_images=1, slow_images=1, presets=['1x1'],
                   table4=[dict(table, mode=m) for m in ('binary, VAE decode', 'binary, learned readout', 'palette')],
                   half=dict(mIoU=50.0, images_per_s=10.0), flops=[],
                   vocabulary=[dict(mode=m, classes=n, seconds=0.2) for m in ('binary, VAE decode',
                                                                             'binary, learned readout') for n in (2, 3)]
                   + rows)
    text = markdown(results, 'cmd', '/tmp/p.png', '/tmp/doc.md')
    [palette_row] = [line for line in text.splitlines() if line.startswith('| palette |')]
    assert palette_row.endswith('| refused | 1.00x (2 / 2) |') and 'Refused: palette: 3 classes are too many' in text
