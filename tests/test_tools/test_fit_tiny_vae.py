"""tools/fit_tiny_vae.py: a fresh fit, and ``--init`` continuing a saved VAE with its own architecture.

The tool's ``main`` runs in this process (its command line through ``sys.argv``): a fresh interpreter would
spend most of the test importing torch and diffusers."""
import importlib.util
import json
import os.path as osp
import re
import sys

import pytest
import torch

from ..conftest import REPO_ROOT

# a very small VAE, two steps: the tool's path end to end, not its quality
SMALL = ['--iters', '2', '--batch-size', '2', '--widths', '8', '8', '8', '--norm-groups', '4', '--latent-channels',
         '4', '--eval-every', '0', '--no-bf16']


def _tool():
    spec = importlib.util.spec_from_file_location('fit_tiny_vae', osp.join(REPO_ROOT, 'tools/fit_tiny_vae.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def run_fit(monkeypatch, capsys, *args):
    """``python tools/fit_tiny_vae.py ARGS`` in this process, on this process's threads; what it printed."""
    tool = _tool()
    monkeypatch.setattr(sys, 'argv', ['fit_tiny_vae.py', *args, '--threads', str(torch.get_num_threads())])
    capsys.readouterr()
    tool.main()
    return capsys.readouterr().out


def _load(folder):
    from diffusers import AutoencoderKL
    return AutoencoderKL.from_pretrained(folder, subfolder='vae')


def test_fit_then_continue_with_init(tmp_path, monkeypatch, capsys):
    first, second = str(tmp_path / 'first'), str(tmp_path / 'second')
    out = run_fit(monkeypatch, capsys, '--out', first, *SMALL)
    assert 'image PSNR' in out and 'saved' in out
    with open(osp.join(first, 'vae', 'config.json')) as f:
        cfg = json.load(f)
    assert cfg['latent_channels'] == 4 and cfg['block_out_channels'] == [8, 8, 8]
    assert 0.05 < cfg['scaling_factor'] < 100 and cfg['scaling_factor'] != 0.18215

    # --init: no architecture options, yet the saved one (not the 16-channel default) is continued
    out = run_fit(monkeypatch, capsys, '--init', first, '--out', second, '--iters', '2', '--batch-size', '2',
                  '--eval-every', '0', '--no-bf16')
    assert f'tiny VAE from {first}' in out and '4 latent channels' in out
    a, b = _load(first), _load(second)
    assert b.config.latent_channels == 4 and list(b.config.block_out_channels) == [8, 8, 8]
    # it started from the first fit's weights (two small Adam steps away) and trained them further
    wa, wb = a.encoder.conv_in.weight, b.encoder.conv_in.weight
    assert not torch.equal(wa, wb)
    assert (wa - wb).abs().max().item() < 0.05


def test_init_without_a_vae_names_the_folder(tmp_path, monkeypatch, capsys):
    """The error comes before any fitting: it names the missing file and the fix."""
    with pytest.raises(FileNotFoundError) as error:
        run_fit(monkeypatch, capsys, '--init', str(tmp_path / 'nothing'), '--out', str(tmp_path / 'o'), '--iters', '1')
    message = str(error.value)
    assert 'no ' in message and 'nothing/vae/config.json' in message and 'holds vae/' in message


class _Through:
    """An autoencoder whose round trip returns its input plus ``shift`` (the metric's arithmetic by hand)."""
    dtype = torch.float32

    def __init__(self, shift=0.0):
        self.shift = shift

    def encode(self, x):
        return type('Encoded', (), dict(latent_dist=type('Posterior', (), dict(mode=lambda _: x))()))()

    def decode(self, z):
        return type('Decoded', (), dict(sample=z + self.shift))()

    def eval(self):
        return self

    training = False

    def train(self, mode):
        return self


def test_palette_round_trip_metric_by_hand():
    tool = _tool()
    # a perfect round trip keeps every class, with the 6-colour palette and with 6 colours drawn from 150
    assert tool.palette_miou(_Through(), 0, 6, num_img=4) == pytest.approx(100.0)
    assert tool.palette_miou(_Through(), 0, 150, num_img=4) == pytest.approx(100.0)
    # everything turned white: only the class painted white (test-time colour 1 of the 6-colour palette) is
    # ever predicted, so every other class scores 0
    white = tool.palette_miou(_Through(shift=10.0), 0, 6, num_img=4)
    assert 0 <= white < 100 / 3


def test_painted_label_maps_give_each_class_its_own_colour():
    tool = _tool()
    import numpy as np
    from mmseg_digseg.models.segmentors.digseg_palette import palette_colours
    labels = [np.array([[0, 1], [2, 2]]), np.array([[3, 3], [0, 0]])]
    painted = tool.paint_labels(np.random.default_rng(0), labels, palette_colours(150))
    assert painted.shape == (2, 3, 2, 2)
    for label, image in zip(labels, painted):
        colours = {int(c): tuple(image[:, y, x].tolist()) for (y, x), c in np.ndenumerate(label)}
        assert len(set(colours.values())) == len(colours)  # distinct classes, distinct colours
        for (y, x), c in np.ndenumerate(label):
            assert tuple(image[:, y, x].tolist()) == colours[int(c)]


def test_fit_with_painted_label_maps(tmp_path, monkeypatch, capsys):
    out = run_fit(monkeypatch, capsys, '--out', str(tmp_path / 'p'), *SMALL, '--palette-masks', '2',
                  '--log-every', '1')
    assert '+ 2 painted label maps (150 colours)' in out
    assert re.search(r'\[    2/2\] .* palette \d+\.\d+ ', out)
    assert re.search(r'palette round-trip mIoU, 6 classes in 150 colours .*: \d+\.\d+', out)
    with pytest.raises(SystemExit, match='at least 49 colours'):
        run_fit(monkeypatch, capsys, '--out', str(tmp_path / 'q'), *SMALL, '--palette-masks', '2',
                '--palette-size', '20')


def test_synth_shapes_batches_keep_the_stream_of_the_shipped_fits():
    """``--mix synth_shapes`` (the default) draws exactly what the shipped VAE's fits drew: scene i gives image i
    and, for i < masks, one class mask (present with probability 0.8, else any class)."""
    import numpy as np
    from mmseg_digseg.datasets.synth_shapes import render_sample
    imgs, masks = _tool().sample_batch(np.random.default_rng(3), 2, 3)
    rng = np.random.default_rng(3)
    for i in range(3):
        img, label = render_sample(rng)
        if i < 2:
            np.testing.assert_allclose(imgs[i].permute(1, 2, 0).numpy(), img / 127.5 - 1.0, atol=1e-6)
        cls = rng.choice(np.unique(label)) if rng.random() < 0.8 else rng.integers(0, 6)
        np.testing.assert_array_equal(masks[i][0].numpy(), np.where(label == cls, 1.0, -1.0))


def test_fit_on_the_broad_mix(tmp_path, monkeypatch, capsys):
    import numpy as np
    imgs, masks = _tool().sample_batch(np.random.default_rng(0), 5, 4, mix='broad')
    assert imgs.shape == (5, 3, 64, 64) and masks.shape == (4, 3, 64, 64)
    assert -1 <= imgs.min() and imgs.max() <= 1
    assert set(masks.unique().tolist()) <= {-1.0, 1.0}
    out = run_fit(monkeypatch, capsys, '--out', str(tmp_path / 'b'), *SMALL, '--mix', 'broad')
    assert 'batch 2 images (broad) + 2 masks' in out
    assert re.search(r'image PSNR \(100 held-out images, 49-class SynthShapes scenes, in neither mix\): \d+\.\d+ dB',
                     out)
    assert re.search(r'image PSNR \(100 held-out images, the broad mix\): \d+\.\d+ dB', out)


def test_eval_only_figure_shows_originals_above_each_vaes_round_trip(tmp_path, monkeypatch, capsys):
    from PIL import Image
    fitted = tmp_path / 'fit.png'  # a fit draws its VAE's round trips too
    run_fit(monkeypatch, capsys, '--out', str(tmp_path / 'v'), *SMALL, '--figure', str(fitted))
    assert Image.open(fitted).size == (150 + 16 * 64 * 2, 2 * 64 * 2)
    figure = tmp_path / 'fig' / 'roundtrip.png'
    out = run_fit(monkeypatch, capsys, '--eval-only', str(tmp_path / 'v'), '--compare',
                  osp.join(REPO_ROOT, 'checkpoints/tiny_sd'), '--figure', str(figure))
    assert 'figure: ' in out
    # 8 49-class scenes and 8 mix images at 2x, after a 150-px label column; the originals, then two VAEs' rows
    assert Image.open(figure).size == (150 + 16 * 64 * 2, 3 * 64 * 2)
