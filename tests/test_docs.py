"""The README's and docs' marked code blocks run as written, on the tiny model (the docs must not rot).

A fenced ```python or ```bash block on the line after ``<!-- tested: tests/test_docs.py -->`` in README.md or
docs/**/*.md runs here; with ``, saved as PATH`` in that comment the block is written to PATH instead (a config
a later block uses). A file's blocks run in order, in one scratch folder and (Python) one namespace. The folder
holds the repository's configs, checkpoints, tools and demo, a small SynthShapes under data/synth_shapes, a
three-class data/my_data, and a stand-in for the quickstart's checkpoint (its config's model, not fine-tuned).

Bash blocks may hold only ``python SCRIPT ARGS`` commands: they run in this process through runpy, which spares
each command the seconds its imports take in a fresh interpreter. Mark only what runs on CPU in seconds.
"""
import glob
import os
import os.path as osp
import re
import runpy
import shlex
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from .conftest import REPO_ROOT

MARKER = re.compile(r'<!-- tested: tests/test_docs\.py(?:, saved as (?P<path>\S+))? -->\n'
                    r'```(?P<lang>python|bash)\n(?P<code>.*?)```', re.S)
DOCS = ['README.md'] + sorted(osp.relpath(p, REPO_ROOT) for p in glob.glob(osp.join(REPO_ROOT, 'docs/**/*.md'),
                                                                           recursive=True))
QUICKSTART_CLASSES = ('background', 'disc', 'square', 'triangle', 'cross', 'ring')
QUICKSTART_CONFIG = osp.join(REPO_ROOT, 'configs/digseg/digseg_tiny-pretrained_synth-shapes-64.py')  # its config
QUICKSTART_CHECKPOINT = 'work_dirs/quickstart/iter_1800.pth'  # its last iteration


def marked_blocks(doc):
    with open(osp.join(REPO_ROOT, doc)) as f:
        return [(m['lang'], m['code'], m['path']) for m in MARKER.finditer(f.read())]


DOCS_WITH_BLOCKS = [doc for doc in DOCS if marked_blocks(doc)]


def python_commands(script):
    """``python X ARGS`` commands of a shell block, continuation lines joined, comments dropped."""
    commands = []
    for line in script.replace('\\\n', ' ').splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] != 'python' or len(words) < 2 or not words[1].endswith('.py'):
            raise AssertionError(f'A tested bash block may only run "python SCRIPT.py ARGS"; got: {line.strip()}')
        commands.append(words[1:])
    return commands


def run_script(argv):
    """``python ARGV`` in this process; what the script sets in sys.argv, sys.path and the environment
    (tools/train.py sets LOCAL_RANK) is put back for the tests that follow."""
    saved_argv, saved_path, saved_environ = sys.argv, list(sys.path), dict(os.environ)
    sys.argv = list(argv)
    try:
        runpy.run_path(argv[0], run_name='__main__')
    except SystemExit as exit_:
        assert exit_.code in (None, 0), f'{" ".join(argv)} exited with {exit_.code}'
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        os.environ.clear()
        os.environ.update(saved_environ)


def write_labelled_images(root, split, count, rng):
    """Random images whose label maps hold a rectangle of class 1 and one of class 2 on class 0."""
    for d in ('img_dir', 'ann_dir'):
        os.makedirs(osp.join(root, d, split), exist_ok=True)
    for i in range(count):
        label = np.zeros((64, 64), np.uint8)
        label[8:30, 10:40], label[36:60, 20:56] = 1, 2
        image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(image).save(osp.join(root, 'img_dir', split, f'{i:03d}.png'))
        Image.fromarray(label).save(osp.join(root, 'ann_dir', split, f'{i:03d}.png'))


@pytest.fixture(scope='module')
def docs_workspace(tmp_path_factory, synth_root):
    root = tmp_path_factory.mktemp('docs_workspace')
    # configs/ holds links to the repository's config folders, so that a block saved under configs/ stays here
    os.makedirs(root / 'configs')
    for name in os.listdir(osp.join(REPO_ROOT, 'configs')):
        os.symlink(osp.join(REPO_ROOT, 'configs', name), root / 'configs' / name)
    for name in ('checkpoints', 'tools', 'demo'):
        os.symlink(osp.join(REPO_ROOT, name), root / name)
    os.makedirs(root / 'data')
    os.symlink(synth_root, root / 'data/synth_shapes')
    rng = np.random.default_rng(0)
    write_labelled_images(str(root / 'data/my_data'), 'train', 4, rng)
    write_labelled_images(str(root / 'data/my_data'), 'val', 2, rng)
    from mmseg_digseg.apis import init_digseg
    torch.manual_seed(0)
    model = init_digseg(QUICKSTART_CONFIG)
    os.makedirs(root / 'work_dirs/quickstart')
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=dict(classes=QUICKSTART_CLASSES))),
               root / QUICKSTART_CHECKPOINT)
    (root / 'work_dirs/quickstart/last_checkpoint').write_text(QUICKSTART_CHECKPOINT)
    return root


def run_doc(doc, workspace, monkeypatch):
    """Run a file's tested blocks in order; the Python namespace they shared."""
    monkeypatch.chdir(workspace)
    namespace = {}
    for lang, code, saved_as in marked_blocks(doc):
        if saved_as:
            os.makedirs(osp.dirname(saved_as) or '.', exist_ok=True)
            with open(saved_as, 'w') as f:
                f.write(code)
        elif lang == 'python':
            exec(compile(code, doc, 'exec'), namespace)  # noqa: S102 (our own docs)
        else:
            for argv in python_commands(code):
                run_script(argv)
    return namespace


def outputs(pattern):
    return sorted(osp.basename(p) for p in glob.glob(pattern))


def check_readme(ns, out):
    # the CLI: the overlay and one score map per prompt, named after the prompts in their order
    assert outputs('work_dirs/infer/00001_*') == [
        '00001_overlay.png', '00001_score_000_disc.png', '00001_score_001_ring.png',
        '00001_score_002_background.png'
    ]
    assert Image.open('work_dirs/infer/00001_overlay.png').size[1] >= 64
    # Python: labels index the three prompts
    assert ns['labels'].shape == (1, 64, 64) and int(ns['labels'].max()) < 3


def check_get_started(ns, out):
    # the confusion-matrix tool on the 4 validation images: matrix over the 6 classes plus the ignored row
    import json
    with open('work_dirs/quickstart/confusion_val/confusion_matrix.json') as f:
        result = json.load(f)
    matrix = np.array(result['counts'])
    assert result['split'] == 'val' and result['num_images'] == 4
    assert matrix.shape == (7, 6) and matrix.sum() == 4 * 64 * 64


def check_inference(ns, out):
    scores = ns['scores']
    assert scores.shape == (3, 64, 64) and float(scores.min()) >= 0 and float(scores.max()) <= 1
    # each pixel's label is a prompt with the highest score there (binary mode: the argmax)
    assert (scores.gather(0, ns['labels'][None]) >= scores.max(0).values - 1e-6).all()
    assert Image.open('overlay.png').mode == 'RGB' and len(ns['score_maps']) == 3
    # folder inference: every validation image of the folder (4 here), one overlay and 3 score maps each
    written = outputs('work_dirs/infer_val/*.png')
    assert len(written) == 4 * 4 and sum(name.endswith('_overlay.png') for name in written) == 4
    assert osp.isfile('demo_result.png')
    assert ns['result'].pred_sem_seg.data.shape == (1, 64, 64)  # the sliding-window result


def check_datasets(ns, out):
    # two iterations on data/my_data, validated on its 2 images over its 3 classes
    assert osp.isfile('work_dirs/my_data_check/iter_2.pth')
    checkpoint = torch.load('work_dirs/my_data_check/iter_2.pth', map_location='cpu', weights_only=False)
    assert tuple(checkpoint['meta']['dataset_meta']['classes']) == ('background', 'cat', 'sofa')


def check_cheaper_inference(ns, out):
    assert ns['model'].test_cfg['num_steps'] == 2 and ns['model'].test_cfg['ensemble_size'] == 1  # preset 1x2
    assert int(ns['result'].pred_sem_seg.data.max()) < 4
    # labels only, 150 classes: a label map and no logits
    assert ns['labels'].shape == (1, 64, 64) and int(ns['labels'].max()) < 150
    assert 'seg_logits' not in ns['segment'](ns['model'], ns['image'], ['disc', 'ring'])
    # get_flops: 150 U-Net passes and 150 VAE decodes per image at 1x1
    assert '150 classes' in out and re.search(r'\| U-Net pass \| [^|]+ \| 150 \|', out)
    assert re.search(r'\| VAE decode \(mask\) \| [^|]+ \| 150 \|', out)


CHECKS = {
    'README.md': check_readme,
    'docs/get_started.md': check_get_started,
    'docs/user_guides/2_inference.md': check_inference,
    'docs/user_guides/3_datasets.md': check_datasets,
    'docs/user_guides/6_cheaper_inference.md': check_cheaper_inference,
}


@pytest.mark.parametrize('doc', DOCS_WITH_BLOCKS)
def test_tested_blocks_run(doc, docs_workspace, monkeypatch, capsys):
    namespace = run_doc(doc, docs_workspace, monkeypatch)
    assert doc in CHECKS, f'{doc} has tested blocks: add what they must produce to CHECKS'
    CHECKS[doc](namespace, capsys.readouterr().out)


def test_every_doc_with_checks_has_marked_blocks():
    assert set(CHECKS) <= set(DOCS_WITH_BLOCKS), set(CHECKS) - set(DOCS_WITH_BLOCKS)


def test_links_point_to_existing_files():
    link = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')
    broken = []
    for doc in DOCS:
        with open(osp.join(REPO_ROOT, doc)) as f:
            for target in link.findall(f.read()):
                path = target.split('#')[0]
                if not path or re.match(r'[a-z]+:', path):
                    continue
                if not osp.exists(osp.join(REPO_ROOT, osp.dirname(doc), path)):
                    broken.append(f'{doc}: {target}')
    assert not broken, broken


def test_readme_front_door():
    """What a new user comes for is on the README's first two screens; the manual lives in docs/."""
    with open(osp.join(REPO_ROOT, 'README.md')) as f:
        lines = f.read().splitlines()
    assert len(lines) <= 200, len(lines)
    headings = [i for i, line in enumerate(lines) if line.startswith('## ')]
    first_screens = ' '.join(lines[i] for i in headings if i < 100)
    for section in ('Install', 'Quickstart', 'your image', 'your data'):
        assert section in first_screens, f'"{section}" is not among the headings of the first 100 lines'


def test_readme_config_is_the_tested_one():
    """The README's "your data" config is the one docs/user_guides/3_datasets.md saves and trains."""
    with open(osp.join(REPO_ROOT, 'README.md')) as f:
        readme_configs = [c for c in re.findall(r'```python\n(.*?)```', f.read(), re.S) if c.startswith('# configs/')]
    tested = [code for _, code, saved_as in marked_blocks('docs/user_guides/3_datasets.md') if saved_as]
    assert readme_configs and readme_configs == tested
