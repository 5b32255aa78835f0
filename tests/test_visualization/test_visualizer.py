"""DiGSegVisualizer: image | ground truth | prediction, enlarged, one legend; any class count, grey ignore."""
import glob
import itertools
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.registry import VISUALIZERS
from mmseg.structures import SegDataSample
from PIL import Image

from mmseg_digseg.datasets.synth_shapes import CLASSES, PALETTE
from mmseg_digseg.visualization import DiGSegVisualizer
from mmseg_digseg.visualization.digseg_visualizer import IGNORE_COLOUR

_names = (f'test_digseg_visualizer_{i}' for i in itertools.count())


def make_visualizer(**kwargs):
    vis = VISUALIZERS.build(dict(type='DiGSegVisualizer', name=next(_names), **kwargs))
    assert isinstance(vis, DiGSegVisualizer)
    vis.dataset_meta = dict(classes=CLASSES, palette=PALETTE)  # what the Runner sets from the dataset
    return vis


def sample(gt, pred):
    s = SegDataSample()
    s.gt_sem_seg = PixelData(data=torch.as_tensor(gt)[None])
    s.pred_sem_seg = PixelData(data=torch.as_tensor(pred)[None])
    return s


def pixel(picture, layout, panel, y, x):
    """The picture's colour at image pixel (y, x) of a panel (the centre of its enlarged square)."""
    left, top, _, _ = layout['panels'][panel]
    s = layout['scale']
    return picture[top + y * s + s // 2, left + x * s + s // 2]


@pytest.fixture
def scene():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 64, 3), dtype=np.uint8)  # H != W on purpose
    gt = np.zeros((40, 64), np.int64)
    gt[5:15, 5:15] = 1  # disc
    gt[20:30, 30:40] = 5  # ring
    gt[0:3, 60:64] = 255  # ignored
    pred = np.zeros((40, 64), np.int64)
    pred[5:15, 5:15] = 2  # square where the disc is
    pred[20:30, 30:40] = 5
    return image, gt, pred


def test_three_enlarged_panels_and_one_legend(scene, tmp_path):
    image, gt, pred = scene
    vis = make_visualizer(scale=4, alpha=1.0)
    out_file = str(tmp_path / 'out.png')
    drawn = vis.add_datasample('x', image, sample(gt, pred), out_file=out_file)
    written = np.asarray(Image.open(out_file).convert('RGB'))
    np.testing.assert_array_equal(written, drawn)  # the file holds the picture (RGB, not BGR)

    m, g = vis.margin, vis.gap
    assert drawn.shape[1] == 2 * m + 3 * 64 * 4 + 2 * g  # 3 panels x scale
    panels = vis.layout['panels']
    assert list(panels) == ['image', 'ground truth', 'prediction']
    assert all(p[2:] == (256, 160) for p in panels.values())
    top = panels['image'][1]
    assert drawn.shape[0] > top + 160 + 20  # the legend below the panels

    # the image panel: the image, enlarged nearest-neighbour
    left = panels['image'][0]
    np.testing.assert_array_equal(drawn[top:top + 160:4, left:left + 256:4], image)
    np.testing.assert_array_equal(drawn[top + 1:top + 160:4, left + 3:left + 256:4], image)
    # flat colours (alpha 1): the palette colour of the predicted / true class at known places
    assert tuple(pixel(drawn, vis.layout, 'prediction', 10, 10)) == tuple(PALETTE[2])  # square
    assert tuple(pixel(drawn, vis.layout, 'ground truth', 10, 10)) == tuple(PALETTE[1])  # disc
    assert tuple(pixel(drawn, vis.layout, 'prediction', 25, 35)) == tuple(PALETTE[5])  # ring
    assert tuple(pixel(drawn, vis.layout, 'ground truth', 1, 62)) == IGNORE_COLOUR  # 255: grey
    assert tuple(pixel(drawn, vis.layout, 'prediction', 1, 62)) == tuple(PALETTE[0])

    # one legend: every class (6 are few) and 'ignored', each with its colour swatch below the panels
    assert vis.layout['legend'] == list(CLASSES) + ['ignored']
    legend = drawn[top + 160:].reshape(-1, 3)
    for colour in PALETTE[1:] + [list(IGNORE_COLOUR)]:
        assert (legend == colour).all(1).sum() >= 100, colour
    # titles: dark text above every panel
    for left, _, pw, _ in panels.values():
        assert (drawn[m:top, left:left + pw] < 100).all(2).sum() > 20


def test_blend_over_the_image_and_automatic_scale(scene):
    image, gt, pred = scene
    vis = make_visualizer(alpha=0.6)  # default scale: short side (40) to >= 256 -> 7
    drawn = vis.add_datasample('x', image, sample(gt, pred))
    assert vis.layout['scale'] == 7 and vis.layout['panels']['prediction'][2:] == (64 * 7, 40 * 7)
    expected = np.round(image[10, 10] * 0.4 + np.array(PALETTE[2]) * 0.6)
    np.testing.assert_allclose(pixel(drawn, vis.layout, 'prediction', 10, 10), expected, atol=1)
    assert vis.get_image().shape == drawn.shape


def test_many_classes_16_bit_labels_and_ignore(tmp_path):
    classes = tuple(f'class {i}' for i in range(300))
    palette = np.random.default_rng(1).integers(0, 256, (300, 3)).tolist()
    vis = VISUALIZERS.build(dict(type='DiGSegVisualizer', name=next(_names), scale=2, alpha=1.0))
    vis.dataset_meta = dict(classes=classes, palette=palette)
    image = np.full((32, 32, 3), 200, np.uint8)
    gt = np.full((32, 32), 65535, np.int64)  # 16-bit 'unlabeled'
    gt[:16] = 299
    gt[16:, :8] = 255  # a real class with 300 classes
    pred = np.full((32, 32), 7, np.int64)
    drawn = vis.add_datasample('x', image, sample(gt, pred))
    assert tuple(pixel(drawn, vis.layout, 'ground truth', 4, 4)) == tuple(palette[299])
    assert tuple(pixel(drawn, vis.layout, 'ground truth', 20, 4)) == tuple(palette[255])
    assert tuple(pixel(drawn, vis.layout, 'ground truth', 20, 20)) == IGNORE_COLOUR
    assert tuple(pixel(drawn, vis.layout, 'prediction', 20, 20)) == tuple(palette[7])
    # many classes: the legend lists only those present
    assert vis.layout['legend'] == ['class 7', 'class 255', 'class 299', 'ignored']

    # an explicit ignore_index greys a label inside the class range too
    vis2 = VISUALIZERS.build(dict(type='DiGSegVisualizer', name=next(_names), scale=2, alpha=1.0,
                                  ignore_index=255))
    vis2.dataset_meta = dict(classes=classes, palette=palette)
    drawn = vis2.add_datasample('x', image, sample(gt, pred))
    assert tuple(pixel(drawn, vis2.layout, 'ground truth', 20, 4)) == IGNORE_COLOUR


def test_through_the_segvisualizationhook(scene, tmp_path):
    """The path of tools/test.py --show-dir: the hook reads the image and calls add_datasample; the
    LocalVisBackend writes one PNG per image under save_dir."""
    from mmseg.engine.hooks import SegVisualizationHook
    image, gt, pred = scene
    vis = make_visualizer(vis_backends=[dict(type='LocalVisBackend')], save_dir=str(tmp_path / 'show'))
    hook = SegVisualizationHook(draw=True, interval=1)
    hook._visualizer = vis  # the hook takes the current instance; make sure it is this one
    paths = []
    for i in range(2):
        path = str(tmp_path / f'{i:05d}.png')
        Image.fromarray(image).save(path)
        paths.append(path)
    outputs = []
    for path in paths:
        s = sample(gt, pred)
        s.set_metainfo(dict(img_path=path))
        outputs.append(s)

    class FakeRunner:
        iter = 0

    hook.after_test_iter(FakeRunner(), 0, {}, outputs)
    written = sorted(glob.glob(osp.join(tmp_path, 'show', '**', '*.png'), recursive=True))
    assert len(written) == 2
    picture = np.asarray(Image.open(written[0]).convert('RGB'))
    assert picture.shape[1] == 2 * vis.margin + 3 * 64 * 7 + 2 * vis.gap


def test_image_only_without_labels():
    vis = make_visualizer(scale=3)
    drawn = vis.add_datasample('x', np.zeros((20, 30, 3), np.uint8), None)
    assert list(vis.layout['panels']) == ['image'] and vis.layout['legend'] == []
    assert drawn.shape[1] == 2 * vis.margin + 90
