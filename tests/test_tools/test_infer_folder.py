"""tools/infer.py on a folder and a glob (unreadable files skipped, named in a warning), and its score maps
checked pixel by pixel against a model whose answer is known (one prompt and two). The tool runs as its own
__main__ in this process (runpy, its real command line): a subprocess would spend most of its time importing."""
import glob
import os.path as osp
import runpy
import shutil

import numpy as np
import pytest
from PIL import Image

from ..conftest import REPO_ROOT, TINY_CONFIG
from ..test_apis.test_inference import striped_readout_checkpoint, sure_rows


def run_infer(capsys, monkeypatch, *args):
    """tools/infer.py ARGS as __main__; its stdout + stderr (warnings and the progress bar)."""
    monkeypatch.setattr('sys.argv', ['tools/infer.py', *args])
    runpy.run_path(osp.join(REPO_ROOT, 'tools/infer.py'), run_name='__main__')
    captured = capsys.readouterr()
    return captured.out + captured.err

# viridis at 0 and at 1 (matplotlib's colormap data), the colours of a sure "no" and a sure "yes"
VIRIDIS_0, VIRIDIS_1 = (68, 1, 84), (253, 231, 37)
LEARNED = ['--mask-readout', 'learned']


@pytest.fixture(scope='module')
def striped_checkpoint(tmp_path_factory):
    return striped_readout_checkpoint(str(tmp_path_factory.mktemp('ckpt') / 'striped.pth'))


@pytest.fixture
def image_folder(synth_root, tmp_path):
    folder = tmp_path / 'images'
    folder.mkdir()
    for path in sorted(glob.glob(osp.join(synth_root, 'img_dir/val/*.png')))[:2]:
        shutil.copy(path, folder)
    (folder / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'not really an image' * 10)  # PNG magic, no data
    (folder / 'notes.txt').write_text('not an image file: ignored in a folder')
    return folder


def assert_striped(score_map_path):
    """The saved score map is viridis(1) on the rows the model is sure of and viridis(0) elsewhere."""
    rgb = np.asarray(Image.open(score_map_path).convert('RGB')).astype(int)
    rows = sure_rows(rgb.shape[0])
    assert np.abs(rgb[rows] - VIRIDIS_1).max() <= 2, rgb[rows].reshape(-1, 3)[0]
    assert np.abs(rgb[~rows] - VIRIDIS_0).max() <= 2, rgb[~rows].reshape(-1, 3)[0]


def test_infer_a_folder_skips_the_unreadable_file(striped_checkpoint, image_folder, tmp_path, capsys, monkeypatch):
    out_dir = tmp_path / 'out'
    out = run_infer(capsys, monkeypatch, str(image_folder), '--config', TINY_CONFIG, '--checkpoint',
                    striped_checkpoint, *LEARNED, '--prompts', 'disc,ring', '--out-dir', str(out_dir))
    assert f'Warning: skipped {image_folder / "broken.png"}' in out
    assert 'Done: 2 of 3 image(s) segmented' in out and 'notes.txt' not in out
    assert '3/3' in out  # tqdm's progress bar reached the end
    stems = sorted(osp.basename(p)[:-4] for p in glob.glob(str(image_folder / '*.png')) if 'broken' not in p)
    assert len(stems) == 2
    overlays = sorted(osp.basename(p) for p in glob.glob(str(out_dir / '*_overlay.png')))
    assert overlays == [f'{s}_overlay.png' for s in stems]
    for stem in stems:
        maps = sorted(glob.glob(str(out_dir / f'{stem}_score_*.png')))
        assert [osp.basename(m) for m in maps] == [f'{stem}_score_000_disc.png', f'{stem}_score_001_ring.png']
        for score_map in maps:
            assert_striped(score_map)
    assert not glob.glob(str(out_dir / 'broken*'))


def test_infer_one_prompt_writes_probabilities(striped_checkpoint, synth_root, tmp_path, capsys, monkeypatch):
    """One prompt: MMSeg already turned the logits into probabilities; sigmoiding them again gave maps in
    [0.5, 0.73] (never viridis' ends)."""
    first = sorted(glob.glob(osp.join(synth_root, 'img_dir/val/*.png')))[0]
    out = run_infer(capsys, monkeypatch, first, '--config', TINY_CONFIG, '--checkpoint', striped_checkpoint,
                    *LEARNED, '--prompts', 'disc', '--out-dir', str(tmp_path))
    assert 'and 1 score maps' in out
    stem = osp.splitext(osp.basename(first))[0]
    assert_striped(tmp_path / f'{stem}_score_000_disc.png')


def test_inputs_from_a_glob_and_clear_errors(synth_root, tmp_path):
    infer = runpy.run_path(osp.join(REPO_ROOT, 'tools/infer.py'))
    images = sorted(glob.glob(osp.join(synth_root, 'img_dir/val/*.png')))
    assert infer['list_inputs'](osp.join(synth_root, 'img_dir/val/*.png')) == images
    assert infer['list_inputs'](images[0]) == [images[0]]
    with pytest.raises(SystemExit, match='No images found at .*quoted glob'):
        infer['list_inputs'](str(tmp_path / '*.jpg'))
    assert infer['output_stems'](['x/a.png', 'y/a.jpg', 'b.png']) == ['a_png', 'a_jpg', 'b']
    (tmp_path / 'bad.jpg').write_bytes(b'\xff\xd8 truncated')
    image, problem = infer['read_image'](str(tmp_path / 'bad.jpg'))
    assert image is None and problem
