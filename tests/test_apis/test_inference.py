import ast
import glob
import os.path as osp

import mmcv
import numpy as np
import pytest
import torch
from PIL import Image

from mmseg_digseg.apis import init_digseg, result_scores, segment
from mmseg_digseg.datasets import load_vocabulary
from ..conftest import REPO_ROOT, TINY_CONFIG

CLASSES = ('background', 'disc', 'square', 'triangle', 'cross', 'ring')


def run_infer(capsys, *args):
    """``python tools/infer.py ARGS`` as its ``main`` in this process (a fresh interpreter would spend most of the
    test importing torch); what it wrote to stdout and stderr."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('infer_tool', osp.join(REPO_ROOT, 'tools/infer.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    capsys.readouterr()
    tool.main(list(args))
    captured = capsys.readouterr()
    return captured.out + captured.err


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """A checkpoint in mmengine's format, with dataset_meta (what tools/train.py writes)."""
    model = init_digseg(TINY_CONFIG)
    path = str(tmp_path_factory.mktemp('ckpt') / 'tiny.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=dict(classes=CLASSES))), path)
    return path


@pytest.fixture(scope='module')
def image_path(synth_root):
    return sorted(glob.glob(osp.join(synth_root, 'img_dir/val/*.png')))[0]


def test_prompts_set_the_vocabulary_and_the_label_order(checkpoint, image_path):
    model = init_digseg(TINY_CONFIG, checkpoint)
    assert model.class_names == list(CLASSES)  # from the checkpoint's dataset_meta
    default = segment(model, image_path)
    assert default.seg_logits.data.shape[0] == 6
    a = segment(model, image_path, ['ring', 'disc', 'square'])
    b = segment(model, image_path, ['square', 'ring', 'disc'])
    assert a.seg_logits.data.shape == (3, 64, 64)
    # the same classes in another order: equal up to float summation order in batched convolutions. Scores,
    # not logits, are compared: near 0 or 1 the logit magnifies a rounding difference (d logit = ds / s(1-s))
    scores_a, scores_b, scores = (r.seg_logits.data.sigmoid() for r in (a, b, default))
    torch.testing.assert_close(scores_b, scores_a[[2, 0, 1]], atol=1e-5, rtol=0)
    torch.testing.assert_close(scores_a[1], scores[1], atol=1e-5, rtol=0)  # 'disc'
    assert model.class_names == list(CLASSES)  # the per-call vocabulary does not stick


def test_arrays_of_any_depth_and_channel_count(checkpoint):
    model = init_digseg(TINY_CONFIG, checkpoint)
    gray16 = (np.random.default_rng(0).random((40, 56)) * 65535).astype(np.uint16)
    [r1, r2] = segment(model, [gray16, np.zeros((40, 56, 4), np.uint8)], ['disc', 'ring'])
    assert r1.pred_sem_seg.data.shape == (1, 40, 56) and r2.seg_logits.data.shape == (2, 40, 56)


def test_infer_tool_writes_overlay_and_score_maps(checkpoint, image_path, tmp_path, capsys):
    out = run_infer(capsys, image_path, '--config', TINY_CONFIG, '--checkpoint', checkpoint,
                    '--prompts', 'disc,ring,background', '--out-dir', str(tmp_path))
    assert 'Wrote' in out
    overlay = np.asarray(Image.open(tmp_path / (osp.splitext(osp.basename(image_path))[0] + '_overlay.png')))
    assert overlay.ndim == 3 and overlay.shape[0] > 64
    assert len(glob.glob(str(tmp_path / '*_score_*.png'))) == 3
    with pytest.raises(SystemExit, match='empty'):  # a message for the command line, not a traceback
        run_infer(capsys, image_path, '--config', TINY_CONFIG, '--checkpoint', checkpoint, '--prompts', ' , ')


def test_infer_tool_takes_a_large_vocabulary_with_pruning(checkpoint, image_path, tmp_path, capsys):
    """A shipped vocabulary larger than --max-score-maps: labels only, top-K pruned."""
    out = run_infer(capsys, image_path, '--config', TINY_CONFIG, '--checkpoint', checkpoint,
                    '--vocabulary', 'pascal_context_59', '--topk', '3', '--max-score-maps', '8',
                    '--out-dir', str(tmp_path))
    assert 'and 0 score maps' in out
    assert osp.isfile(tmp_path / (osp.splitext(osp.basename(image_path))[0] + '_overlay.png'))
    present = ast.literal_eval(out.split('labels present: ')[1].splitlines()[0])
    assert 1 <= len(present) <= 3 and set(present) <= set(load_vocabulary('pascal_context_59'))


def striped_readout_checkpoint(path):
    """A tiny model whose learned readout is sure of its answer: in every f x f block (one latent pixel) the
    top f/2 rows score sigmoid(12) ~ 1 and the others sigmoid(-12) ~ 0, whatever the image and prompt
    (last conv: zero weights, a bias per sub-pixel; PixelShuffle puts channel f * row + col at (row, col))."""
    model = init_digseg(TINY_CONFIG)
    factor, last = model.mask_readout.upsample_factor, model.mask_readout.layers[-2]
    assert factor == READOUT_FACTOR and last.out_channels == factor**2
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([12.0 if c // factor < factor // 2 else -12.0 for c in range(factor**2)]))
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=dict(classes=CLASSES))), path)
    return path


READOUT_FACTOR = 4  # the tiny VAE's downsampling: the readout predicts 4 x 4 pixels per latent pixel


def sure_rows(height):
    """The rows the striped readout is sure are foreground: the top half of every 4-row block."""
    return (np.arange(height) % READOUT_FACTOR) < READOUT_FACTOR // 2


def test_one_prompt_scores_are_not_sigmoided_twice(image_path, tmp_path):
    """With one prompt MMSeg's postprocess_result already stores sigmoid(logits) in seg_logits; the scores
    must be those probabilities (near 1 where the model is sure), not their sigmoid (0.5 .. 0.73)."""
    checkpoint = striped_readout_checkpoint(str(tmp_path / 'striped.pth'))
    model = init_digseg(TINY_CONFIG, checkpoint, cfg_options={'model.test_cfg.mask_readout': 'learned'})
    result = segment(model, image_path, ['disc'])
    scores = result_scores(model, result)
    assert scores.shape == (1, 64, 64)
    rows = torch.from_numpy(sure_rows(64))
    assert scores[0, rows].min() > 0.999 and scores[0, ~rows].max() < 0.001
    # the label map thresholds the same probability
    assert result.pred_sem_seg.data[0, rows].all() and not result.pred_sem_seg.data[0, ~rows].any()
    # several prompts keep logits: same scores for each prompt
    both = result_scores(model, segment(model, image_path, ['disc', 'ring']))
    assert both[:, rows].min() > 0.999 and both[:, ~rows].max() < 0.001


def test_result_scores_match_score_classes(checkpoint, image_path):
    """result_scores of segment() against model.score_classes on the same preprocessed input (another path:
    no logits, no MMSeg postprocessing), for one prompt and for three, with the full VAE decode."""
    model = init_digseg(TINY_CONFIG, checkpoint)
    bgr = torch.from_numpy(mmcv.imread(image_path)).permute(2, 0, 1).contiguous()  # as PackSegInputs packs it
    data = model.data_preprocessor(dict(inputs=[bgr]), False)
    for prompts in (['ring'], ['ring', 'disc', 'square']):
        expected = model.score_classes(data['inputs'], prompts)[0].clamp(1e-4, 1 - 1e-4)
        got = result_scores(model, segment(model, image_path, prompts))
        torch.testing.assert_close(got, expected, atol=2e-6, rtol=0)
        assert 0.01 < expected.std()  # a random model's scores vary: the comparison means something
