"""SynthShapes: a small, deterministic, locally generated segmentation dataset, in two variants.

``'basic'`` (6 classes, the dataset of the tests, the demo configs and the smoke runs): every 64x64
image shows 1-3 textured objects of five classes on a smooth, low-contrast background. A class is
defined by its shape *and* its texture (the two texture colours are random per instance), so colour
alone never identifies it. Easy enough for a tiny model to learn on a CPU in minutes.

``'many'`` (49 classes): 6 shapes x 8 textures, so that *both* shape and texture are needed to tell
two classes apart; every image shows 2-5 objects of distinct classes, placed with little overlap.
Colours are random per instance, so shape and texture are the only cues.

Layout written by :func:`generate_synth_shapes` (the usual MMSegmentation folder layout)::

    root/img_dir/{train,val}/00000.png   RGB uint8
    root/ann_dir/{train,val}/00000.png   mode 'L', pixel value = class index
    root/captions.json                   {split: {file name: caption}}, e.g. 'a dotted disc and a
                                         checkered square on a smooth background'
    root/meta.json                       generation parameters (for idempotence)
"""
import colorsys
import json
import os
import os.path as osp

import numpy as np
from PIL import Image

CLASSES = ('background', 'disc', 'square', 'triangle', 'cross', 'ring')
PALETTE = [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [145, 30, 180]]

# The many-class variant: class 1 + 8 * shape + texture is '<texture> <shape>', e.g. 'dotted disc'.
SHAPES = ('disc', 'square', 'triangle', 'diamond', 'cross', 'ring')
TEXTURES = ('solid', 'horizontally striped', 'vertically striped', 'diagonally striped', 'dotted',
            'checkered', 'bullseye', 'speckled')
MANY_CLASSES = ('background', ) + tuple(f'{t} {s}' for s in SHAPES for t in TEXTURES)
# Golden-ratio hue steps, alternating saturation and value: neighbouring classes look different.
MANY_PALETTE = [[0, 0, 0]] + [[
    int(round(255 * v)) for v in colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.55 + 0.45 * (i % 2),
                                                     0.65 + 0.35 * ((i // 2) % 2))
] for i in range(len(MANY_CLASSES) - 1)]
VARIANTS = {'basic': (CLASSES, PALETTE), 'many': (MANY_CLASSES, MANY_PALETTE)}

# Bump when the rendering changes, so existing generated folders are regenerated.
GENERATOR_VERSION = 1

# Object extent (px across) at the reference size of 64; large enough to survive the 4x
# downsampling of the VAE latent (64x64 -> 16x16). Rings get a larger minimum so that the
# band stays at least ~3 px wide.
_MIN_EXTENT = {1: 14, 2: 14, 3: 16, 4: 16, 5: 18}
_MAX_EXTENT = 30
# The many-class variant: textures need room, so thin shapes (cross arms, ring band) start larger;
# more objects per image get a smaller maximum so that they fit side by side.
_MANY_MIN_EXTENT = {'disc': 16, 'square': 14, 'triangle': 18, 'diamond': 18, 'cross': 20, 'ring': 22}
_MANY_MAX_EXTENT = {2: 30, 3: 28, 4: 26, 5: 24}
_BASIC_SHAPE = {1: 'disc', 2: 'square', 3: 'triangle', 4: 'cross', 5: 'ring'}
# The basic classes' fixed textures, in the words of TEXTURES (for the captions).
_BASIC_TEXTURE = {1: 'horizontally striped', 2: 'checkered', 3: 'dotted', 4: 'diagonally striped',
                  5: 'vertically striped'}
_MIN_VISIBLE_PX = 20  # an object mostly hidden by later ones is left out of the caption
_LUMA = np.array([0.299, 0.587, 0.114])


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
    while True:
        c1, c2 = rng.uniform(0, 255, (2, 3))
        if abs(float(_LUMA @ (c1 - c2))) >= 110:
            return c1, c2


def _solid_colour(rng, background_luma):
    """One random colour that stands out from the background (a solid object has no texture edge)."""
    while True:
        c = rng.uniform(0, 255, 3)
        if abs(float(_LUMA @ c) - background_luma) >= 80:
            return c


def _named_shape_mask(shape, yy, xx, cy, cx, extent):
    """Boolean mask of one object, centred at (cy, cx), ``extent`` px across."""
    r = extent / 2.0
    dy, dx = yy - cy, xx - cx
    if shape == 'disc':
        return dy**2 + dx**2 <= r**2
    if shape == 'square':  # axis-aligned
        return (np.abs(dy) <= r) & (np.abs(dx) <= r)
    if shape == 'triangle':  # upright isosceles: apex at the top, base at the bottom
        t = (dy + r) / (2 * r)  # 0 at the apex, 1 at the base
        return (t >= 0) & (t <= 1) & (np.abs(dx) <= t * r)
    if shape == 'diamond':  # a square standing on a corner
        return np.abs(dy) + np.abs(dx) <= r
    if shape == 'cross':  # plus-shaped, arms one third of the extent thick
        arm = r / 3.0
        inside = (np.abs(dy) <= r) & (np.abs(dx) <= r)
        return inside & ((np.abs(dy) <= arm) | (np.abs(dx) <= arm))
    if shape == 'ring':  # annulus
        d2 = dy**2 + dx**2
        return (d2 <= r**2) & (d2 >= (0.5 * r)**2)
    raise ValueError(f'unknown shape {shape!r}; expected one of {SHAPES}')


def _shape_mask(cls, yy, xx, cy, cx, extent):
    """Mask of a basic-variant class (1..5)."""
    if cls not in _BASIC_SHAPE:
        raise ValueError(f'not a foreground class: {cls}')
    return _named_shape_mask(_BASIC_SHAPE[cls], yy, xx, cy, cx, extent)


def _texture_pattern(cls, yy, xx, rng, scale):
    """Boolean pattern selecting colour 1 vs colour 2; each basic class has its own texture."""
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


def many_texture_pattern(texture, size, cy, cx, phase, rng=None, scale=1):
    """(size, size) boolean pattern of a many-variant texture (True: colour 1, False: colour 2).

    Periods are 6-8 px at scale 1, so textures stay readable at 64x64 and through the tiny VAE.
    ``phase`` (oy, ox) shifts the grid-aligned textures; bullseye rings are centred on (cy, cx);
    ``rng`` draws the speckles.
    """
    yi, xi = np.mgrid[0:size, 0:size]
    y, x = yi + phase[0], xi + phase[1]
    if texture == 'solid':
        return np.ones((size, size), bool)
    if texture == 'horizontally striped':  # period 6
        return (y // (3 * scale)) % 2 == 0
    if texture == 'vertically striped':  # period 6
        return (x // (3 * scale)) % 2 == 0
    if texture == 'diagonally striped':  # period 8 along an axis, 45 degrees
        return ((y + x) // (4 * scale)) % 2 == 0
    if texture == 'dotted':  # 4x4 px dots on a 7 px grid
        p = 7 * scale
        return ((y % p) - p / 2.0)**2 + ((x % p) - p / 2.0)**2 <= (2.2 * scale)**2
    if texture == 'checkered':  # 4 px cells
        return ((y // (4 * scale)) + (x // (4 * scale))) % 2 == 0
    if texture == 'bullseye':  # concentric rings 3 px wide around the object's centre
        d = np.sqrt((yi + 0.5 - cy)**2 + (xi + 0.5 - cx)**2)
        return (d // (3 * scale)) % 2 == 0
    if texture == 'speckled':  # random binary 3 px cells (2 px ones blur away in the tiny VAE)
        cell = 3 * scale
        return rng.random(((size + 8) // cell + 1, ) * 2)[y // cell, x // cell] < 0.5
    raise ValueError(f'unknown texture {texture!r}; expected one of {TEXTURES}')


def paint_many_object(img, label, cls, cy, cx, extent, colours, phase, rng=None, scale=1):
    """Paint one many-variant object of class ``cls`` (1..48) into ``img``/``label`` in place;
    returns its mask."""
    if not 1 <= cls < len(MANY_CLASSES):
        raise ValueError(f'not a many-variant foreground class: {cls} (expected 1..{len(MANY_CLASSES) - 1})')
    size = label.shape[0]
    shape, texture = SHAPES[(cls - 1) // len(TEXTURES)], TEXTURES[(cls - 1) % len(TEXTURES)]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    mask = _named_shape_mask(shape, yy, xx, cy, cx, extent)
    pattern = many_texture_pattern(texture, size, cy, cx, phase, rng, scale)
    img[mask] = np.where(pattern[mask][:, None], colours[0], colours[1])
    label[mask] = cls
    return mask


def _render_basic(rng, size):
    """Returns ``(img float, label, objects)``, objects as (class name, cx, mask) in painting order."""
    k = size / 64.0  # extents and texture periods scale with the image size
    scale = max(1, int(round(k)))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5

    img = _background(rng, size)
    label = np.zeros((size, size), np.uint8)
    objects = []
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
        objects.append((f'{_BASIC_TEXTURE[cls]} {CLASSES[cls]}', cx, mask))
    return img, label, objects


def _render_many(rng, size):
    """Like :func:`_render_basic`: 2-5 objects of distinct classes, each overlapping the ones
    before by at most 5 % of its area when a free spot is found within 100 tries."""
    k = size / 64.0
    scale = max(1, int(round(k)))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5

    img = _background(rng, size)
    background_luma = float(_LUMA @ img.mean(axis=(0, 1)))
    label = np.zeros((size, size), np.uint8)
    occupied = np.zeros((size, size), bool)
    num = int(rng.integers(2, 6))
    objects = []
    for cls in rng.choice(len(MANY_CLASSES) - 1, num, replace=False) + 1:
        cls = int(cls)
        shape, texture = SHAPES[(cls - 1) // len(TEXTURES)], TEXTURES[(cls - 1) % len(TEXTURES)]
        best = None
        for _ in range(100):
            extent = rng.uniform(_MANY_MIN_EXTENT[shape], _MANY_MAX_EXTENT[num]) * k
            cy, cx = rng.uniform(extent / 2.0, size - extent / 2.0, 2)  # fully inside the image
            mask = _named_shape_mask(shape, yy, xx, cy, cx, extent)
            overlap = int((mask & occupied).sum())
            if best is None or overlap < best[0]:
                best = (overlap, cy, cx, extent)
            if overlap <= 0.05 * mask.sum():
                break
        _, cy, cx, extent = best
        colours = ((_solid_colour(rng, background_luma), ) * 2 if texture == 'solid' else _texture_colours(rng))
        phase = rng.integers(0, 8, 2)  # the texture is not tied to the image grid
        mask = paint_many_object(img, label, cls, cy, cx, extent, colours, phase, rng, scale)
        occupied |= mask
        objects.append((MANY_CLASSES[cls], cx, mask))
    return img, label, objects


_NUMBERS = {2: 'two', 3: 'three', 4: 'four', 5: 'five'}


def describe_scene(names):
    """A caption from the visible objects' class names, left to right, e.g.
    ``['dotted disc', 'solid cross', 'dotted disc']`` -> 'two dotted discs and a solid cross on a
    smooth background'."""
    counts = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    parts = []
    for n, c in counts.items():
        if c == 1:
            parts.append(('an ' if n[0] in 'aeiou' else 'a ') + n)
        else:
            parts.append(f'{_NUMBERS.get(c, c)} {n}{"es" if n.endswith(("s", "x")) else "s"}')
    if not parts:
        return 'a smooth background'
    things = parts[0] if len(parts) == 1 else ', '.join(parts[:-1]) + ' and ' + parts[-1]
    return f'{things} on a smooth background'


def render_scene(rng: np.random.Generator, size: int = 64, variant: str = 'basic'):
    """Render one image, its label map and its caption.

    Returns ``(img, label, caption)``: ``img`` (size, size, 3) uint8 RGB, ``label`` (size, size) uint8
    with the variant's class indices. Objects are painted in order, so later ones occlude earlier ones
    and the label map follows what is visible; the caption names the visible objects left to right.
    """
    if variant not in VARIANTS:
        raise ValueError(f'unknown SynthShapes variant {variant!r}; expected one of {tuple(VARIANTS)}')
    img, label, objects = (_render_basic if variant == 'basic' else _render_many)(rng, size)
    # What each object still shows: its mask minus what later objects painted over.
    visible, covered = [], np.zeros_like(label, bool)
    for name, cx, mask in reversed(objects):
        if (mask & ~covered).sum() >= _MIN_VISIBLE_PX:
            visible.append((cx, name))
        covered |= mask
    caption = describe_scene([name for _, name in sorted(visible)])
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), label, caption


def render_sample(rng: np.random.Generator, size: int = 64, variant: str = 'basic'):
    """``(img, label)`` of :func:`render_scene` (the 6-class ``'basic'`` variant by default)."""
    img, label, _ = render_scene(rng, size, variant)
    return img, label


def _split_rng(seed, split_id, index):
    # One generator per sample: the first n samples do not depend on the requested count,
    # and train (split 0) / val (split 1) are derived from the same seed but never coincide.
    return np.random.default_rng([seed, split_id, index])


def generate_synth_shapes(root, num_train=400, num_val=60, size=64, seed=0, variant='basic') -> str:
    """Write SynthShapes to ``root`` in the MMSegmentation layout; returns ``root``.

    Deterministic for a given ``seed`` and ``variant`` ('basic': 6 classes, 'many': 49). Idempotent:
    ``root/meta.json`` records the parameters and, when it matches, nothing is rewritten. It is
    written last, so an interrupted run regenerates.
    """
    if variant not in VARIANTS:
        raise ValueError(f'unknown SynthShapes variant {variant!r}; expected one of {tuple(VARIANTS)}')
    meta = dict(generator_version=GENERATOR_VERSION, num_train=int(num_train),
                num_val=int(num_val), size=int(size), seed=int(seed), classes=list(VARIANTS[variant][0]))
    if variant != 'basic':  # the basic meta.json stays as before, so existing folders are kept
        meta['variant'] = variant
    meta_path = osp.join(root, 'meta.json')
    captions_path = osp.join(root, 'captions.json')
    splits = (('train', 0, int(num_train)), ('val', 1, int(num_val)))
    if osp.isfile(meta_path):
        with open(meta_path) as f:
            old = json.load(f)
        complete = osp.isfile(captions_path) and all(
            osp.isfile(osp.join(root, d, split, f'{n - 1:05d}.png'))
            for split, _, n in splits if n > 0 for d in ('img_dir', 'ann_dir'))
        if old == meta and complete:
            return root
        os.remove(meta_path)

    from tqdm import tqdm

    captions = {}
    for split, split_id, n in splits:
        img_dir = osp.join(root, 'img_dir', split)
        ann_dir = osp.join(root, 'ann_dir', split)
        for d in (img_dir, ann_dir):
            os.makedirs(d, exist_ok=True)
            for name in os.listdir(d):  # drop stale samples of a previous, larger generation
                if name.endswith('.png'):
                    os.remove(osp.join(d, name))
        captions[split] = {}
        for i in tqdm(range(n), desc=f'SynthShapes {split}', disable=n < 200, leave=False):
            img, label, caption = render_scene(_split_rng(seed, split_id, i), size, variant)
            Image.fromarray(img).save(osp.join(img_dir, f'{i:05d}.png'))
            Image.fromarray(label).save(osp.join(ann_dir, f'{i:05d}.png'))
            captions[split][f'{i:05d}.png'] = caption

    with open(captions_path, 'w') as f:
        json.dump(captions, f, indent=1)
    with open(meta_path, 'w') as f:
        json.dump(meta, f, indent=2)
    return root


# The MMSegmentation dataset classes; the generator above does not depend on mmseg.
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


@DATASETS.register_module()
class SynthShapesManyDataset(SynthShapesDataset):
    """The 49-class SynthShapes variant (``generate_synth_shapes(..., variant='many')``)."""

    METAINFO = dict(classes=MANY_CLASSES, palette=MANY_PALETTE)
