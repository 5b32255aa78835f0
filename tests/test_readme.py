"""The README's Python snippets run as written, on the tiny model (the docs must not rot)."""
import os
import os.path as osp
import re

import numpy as np
import torch
from PIL import Image

from .conftest import REPO_ROOT, TINY_CONFIG


def readme_python_snippets():
    with open(osp.join(REPO_ROOT, 'README.md')) as f:
        return re.findall(r'```python\n(.*?)```', f.read(), flags=re.S)


def test_readme_python_snippets_run(tmp_path, monkeypatch):
    snippets = readme_python_snippets()
    assert snippets, 'README has no Python snippet'
    # what the snippets name: the repository's configs, the quickstart checkpoint, an image
    for name in ('configs', 'checkpoints'):
        os.symlink(osp.join(REPO_ROOT, name), tmp_path / name)
    from mmseg_digseg.apis import init_digseg
    model = init_digseg(TINY_CONFIG)
    os.makedirs(tmp_path / 'work_dirs/quickstart')
    classes = ('background', 'disc', 'square', 'triangle', 'cross', 'ring')
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=dict(classes=classes))),
               tmp_path / 'work_dirs/quickstart/iter_1300.pth')
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / 'image.png')
    monkeypatch.chdir(tmp_path)
    for snippet in snippets:
        namespace = {}
        exec(compile(snippet, 'README.md', 'exec'), namespace)  # noqa: S102 (our own docs)
        if 'result' in namespace:  # the segment() example: labels index the prompts
            labels = namespace['result'].pred_sem_seg.data
            assert labels.shape == (1, 64, 64) and labels.max() < 3
