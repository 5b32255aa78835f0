"""SynthShapes: a small, deterministic, locally generated segmentation dataset.

Every 64x64 image shows 1-3 textured objects of five classes on a smooth, low-contrast background.
A class is defined by its shape *and* its texture (the two texture colours are random per instance),
so colour alone never identifies it. The task is easy enough for a tiny model to learn on a CPU in
minutes, which makes it the dataset of the tests, the demo configs and the smoke runs.

Layout written by :func:`generate_synth_shapes` (the usual MMSegmentation folder layout)::

    root/img_dir/{train,val}/00000.png   RGB uint8
    root/ann_dir/{train,val}/00000.png   mode 'L', pixel value = class index 0..5
    root/meta.json                       generation parameters (for idempotence)
"""
import json
import os
import os.path as osp

import numpy as np
from PIL import Image

CLASSES = ('background', 'disc', 'square', 'triangle', 'cross', 'ring')
PALETTE = [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [145, 30, 180]]

# Bump when the rendering changes, so existing generated folders are regenerated.
GENERATOR_VERSION = 1

# Object extent (px across) at the reference size of 64; large enough to survive the 4x
# downsampling of the VAE latent (64x64 -> 16x16). Rings get a larger minimum so that the
# band stays at least ~3 px wide.
_MIN_EXTENT = {1: 14, 2: 14, 3: 16, 4: 16, 5: 18}
_MAX_EXTENT = 30


def _smooth_noise(rng, size, grid=5):
    """Low-frequency noise in [-1, 1]: a coarse random grid, bicubically upsampled."""
    coarse = rng.uniform(-1.0, 1.0, (grid, grid)).astype(np.float32)
    up = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(up, dtype=np.float32), -1.0, 1.0)


def _background(rng, size):
    base = rng.uniform(40, 215, 3)
    tint = rng.uniform(0.5, 1.0, 3)  # per-channel modulation so the noise is not plain grey
    noise = _smooth_noise(rng, size)[..., None]
    return base + 18.0 * noise * tint  # low contrast: about +-18 grey levels


def _texture_colours(rng):
    """Two random colours whose luminance differs strongly (high-contrast texture)."""
    lum = np.array([0.299, 0.587, 0.114])
    while True:
        c1, c2 = rng.uniform(0, 255, (2, 3))
        if abs(float(lum @ (c1 - c2))) >= 110:
            return c1, c2


def _shape_mask(cls, yy, xx, cy, cx, extent):
    """Boolean mask of one object, centred at (cy, cx), ``extent`` px across."""
    r = extent / 2.0
    dy, dx = yy - cy, xx - cx
    if cls == 1:  # disc
        return dy**2 + dx**2 <= r**2
    if cls == 2:  # axis-aligned square
        return (np.abs(dy) <= r) & (np.abs(dx) <= r)
    if cls == 3:  # upright isosceles triangle: apex at the top, base at the bottom
        t = (dy + r) / (2 * r)  # 0 at the apex, 1 at the base
        return (t >= 0) & (t <= 1) & (np.abs(dx) <= t * r)
    if cls == 4:  # plus-shaped cross, arms one third of the extent thick
        arm = r / 3.0
        inside = (np.abs(dy) <= r) & (np.abs(dx) <= r)
        return inside & ((np.abs(dy) <= arm) | (np.abs(dx) <= arm))
    if cls == 5:  # ring (annulus)
        d2 = dy**2 + dx**2
        return (d2 <= r**2) & (d2 >= (0.5 * r)**2)
    raise ValueError(f'not a foreground class: {cls}')


def _texture_pattern(cls, yy, xx, rng, scale):
    """Boolean pattern selecting colour 1 vs colour 2; each class has its own texture."""
    oy, ox = rng.integers(0, 8, 2)  # random phase, so the texture is not tied to the image grid
    y, x = yy + oy, xx + ox
    if cls == 1:  # horizontal stripes, period 6
        return (y // (3 * scale)) % 2 == 0
    if cls == 2:  # checkerboard, 4 px cells
        return ((y // (4 * scale)) + (x // (4 * scale))) % 2 == 0
    if cls == 3:  # dots on a 5 px grid
        p = 5 * scale
        return ((y % p) - p / 2.0)**2 + ((x % p) - p / 2.0)**2 <= (1.6 * scale)**2
    if cls == 4:  # diagonal stripes, period 6
        return ((y + x) // (3 * scale)) % 2 == 0
    if cls == 5:  # fine vertical stripes, period 4
        return (x // (2 * scale)) % 2 == 0
    raise ValueError(f'not a foreground class: {cls}')


def render_sample(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Render one image and its label map.

    Returns ``(img, label)``: ``img`` (size, size, 3) uint8 RGB, ``label`` (size, size) uint8 with
    class indices 0..5. Objects are painted in order, so later ones occlude earlier ones and the
    label map follows what is visible.
    """
    k = size / 64.0  # extents and texture periods scale with the image size
    scale = max(1, int(round(k)))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5

    img = _background(rng, size)
    label = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(1, len(CLASSES)))
        extent = rng.uniform(_MIN_EXTENT[cls], _MAX_EXTENT) * k
        half = extent / 2.0
        cy, cx = rng.uniform(half, size - half, 2)  # fully inside the image
        mask = _shape_mask(cls, yy, xx, cy, cx, extent)
        c1, c2 = _texture_colours(rng)
        pattern = _texture_pattern(cls, yy.astype(np.int64), xx.astype(np.int64), rng, scale)
        img[mask] = np.where(pattern[mask][:, None], c1, c2)
        label[mask] = cls
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), label


def _split_rng(seed, split_id, index):
    # One generator per sample: the first n samples do not depend on the requested count,
    # and train (split 0) / val (split 1) are derived from the same seed but never coincide.
    return np.random.default_rng([seed, split_id, index])


def generate_synth_shapes(root, num_train=400, num_val=60, size=64, seed=0) -> str:
    """Write SynthShapes to ``root`` in the MMSegmentation layout; returns ``root``.

    Deterministic for a given ``seed``. Idempotent: ``root/meta.json`` records the parameters and,
    when it matches, nothing is rewritten. It is written last, so an interrupted run regenerates.
    """
    meta = dict(generator_version=GENERATOR_VERSION, num_train=int(num_train),
                num_val=int(num_val), size=int(size), seed=int(seed), classes=list(CLASSES))
    meta_path = osp.join(root, 'meta.json')
    splits = (('train', 0, int(num_train)), ('val', 1, int(num_val)))
    if osp.isfile(meta_path):
        with open(meta_path) as f:
            old = json.load(f)
        complete = all(
            osp.isfile(osp.join(root, d, split, f'{n - 1:05d}.png'))
            for split, _, n in splits if n > 0 for d in ('img_dir', 'ann_dir'))
        if old == meta and complete:
            return root
        os.remove(meta_path)

    from tqdm import tqdm

    for split, split_id, n in splits:
        img_dir = osp.join(root, 'img_dir', split)
        ann_dir = osp.join(root, 'ann_dir', split)
        for d in (img_dir, ann_dir):
            os.makedirs(d, exist_ok=True)
            for name in os.listdir(d):  # drop stale samples of a previous, larger generation
                if name.endswith('.png'):
                    os.remove(osp.join(d, name))
        for i in tqdm(range(n), desc=f'SynthShapes {split}', disable=n < 200, leave=False):
            img, label = render_sample(_split_rng(seed, split_id, i), size)
            Image.fromarray(img).save(osp.join(img_dir, f'{i:05d}.png'))
            Image.fromarray(label).save(osp.join(ann_dir, f'{i:05d}.png'))

    with open(meta_path, 'w') as f:
        json.dump(meta, f, indent=2)
    return root


# The MMSegmentation dataset class; the generator above does not depend on mmseg.
from mmseg.datasets import BaseSegDataset  # noqa: E402
from mmseg.registry import DATASETS  # noqa: E402


@DATASETS.register_module()
class SynthShapesDataset(BaseSegDataset):
    """SynthShapes in the MMSegmentation layout (see :func:`generate_synth_shapes`)."""

    METAINFO = dict(classes=CLASSES, palette=PALETTE)

    def __init__(self, img_suffix='.png', seg_map_suffix='.png', reduce_zero_label=False, **kwargs):
        super().__init__(
            img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, reduce_zero_label=reduce_zero_label,
            **kwargs)
