"""tools/benchmark.py: every setting in its own process, a table, a JSON and a plot."""
import json

from ..conftest import TINY_CONFIG
from .test_train_test import run_tool


def test_benchmark_measures_each_setting(tmp_path):
    out = run_tool('tools/benchmark.py', TINY_CONFIG, '--vocab-sizes', '5', '--image-size', '32', '40',
                   '--modes', 'labels', '--topk', '3', '--repeats', '1', '--device', 'cpu',
                   '--out-dir', str(tmp_path))
    results = json.loads((tmp_path / 'benchmark.json').read_text())
    # 5 classes, without and with top-3 pruning
    assert [(r['vocab_size'], r['topk']) for r in results] == [(5, None), (5, 3)]
    for r in results:
        assert r['mode'] == 'labels' and r['image_size'] == [32, 40] and r['device'] == 'cpu'
        assert r['seconds_per_image'] > 0 and r['peak_mib_above_model'] >= 0
    assert (tmp_path / 'benchmark.png').stat().st_size > 10_000
    assert '5 classes' in out
