"""tools/fit_tiny_vae.py: a fresh fit, and ``--init`` continuing a saved VAE with its own architecture.

The tool's ``main`` runs in this process (its command line through ``sys.argv``): a fresh interpreter would
spend most of the test importing torch and diffusers."""
import importlib.util
import json
import os.path as osp
import sys

import pytest
import torch

from ..conftest import REPO_ROOT

# a very small VAE, two steps: the tool's path end to end, not its quality
SMALL = ['--iters', '2', '--batch-size', '2', '--widths', '8', '8', '8', '--norm-groups', '4', '--latent-channels',
         '4', '--eval-every', '0', '--no-bf16']


def run_fit(monkeypatch, capsys, *args):
    """``python tools/fit_tiny_vae.py ARGS`` in this process, on this process's threads; what it printed."""
    spec = importlib.util.spec_from_file_location('fit_tiny_vae', osp.join(REPO_ROOT, 'tools/fit_tiny_vae.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
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
