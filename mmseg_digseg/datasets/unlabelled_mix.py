"""A broad unlabelled image mix for fitting the tiny VAE, beyond the benchmarks' own scene generators.

Stable Diffusion's VAE was fitted on far broader images than any segmentation benchmark; the tiny VAE of
``checkpoints/tiny_sd`` saw only 6-class SynthShapes scenes. ``tools/fit_tiny_vae.py --mix broad`` draws each
training image from three sources (:func:`sample_mix_image`):

- ``'synth_shapes'``: the 6-class SynthShapes scenes (the quickstart's data, as before);
- ``'patchwork'``: procedural patchworks (:func:`render_patchwork`): 2-6 random regions (rotated ellipses,
  convex polygons, half-planes, noise blobs) over a background, each filled with a texture drawn from
  continuous families (gratings at any angle and period, square or sinusoidal; rotated checkers; dot
  lattices; concentric rings; speckle of any cell size; smooth noise; plaids; solid), two colours of any
  contrast;
- ``'sample_data'``: random crops of the images matplotlib ships (a photograph, two graphics, two elevation
  maps and an MRI slice, the last three through a random colour map), at random scale, flipped at random.

The 49-class SynthShapes generator is not in the mix: its scenes are the segmentation data a VAE fitted on
the mix is tested on (docs/paper_recipe.md). Its texture kinds (stripes, dots, checks, rings, speckle) are
among the patchwork's families, at other periods, phases and angles, as a web-scale image set holds the
textures of any benchmark.
"""
import functools
import gzip

import numpy as np
from PIL import Image

from .synth_shapes import render_sample

SOURCES = ('synth_shapes', 'patchwork', 'sample_data')
DEFAULT_WEIGHTS = (0.3, 0.5, 0.2)
TEXTURE_FAMILIES = ('solid', 'grating', 'checker', 'dots', 'rings', 'speckle', 'noise', 'plaid')
_COLOUR_MAPS = ('viridis', 'terrain', 'gray', 'magma', 'cividis', 'gist_earth', 'copper', 'ocean')


def _smooth_field(rng, size, grid):
    """Smooth noise in [-1, 1] from a ``grid`` x ``grid`` random grid, bicubically upsampled."""
    coarse = rng.uniform(-1.0, 1.0, (grid, grid)).astype(np.float32)
    return np.clip(np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)), -1, 1)


def _rotated(yy, xx, angle):
    """Coordinates along and across the direction ``angle`` (radians)."""
    c, s = np.cos(angle), np.sin(angle)
    return xx * c + yy * s, -xx * s + yy * c


def texture(family, rng, size):
    """(size, size) float weights in [0, 1] of colour 1 against colour 2, for a texture of ``family``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + rng.uniform(0, 16, (2, 1, 1)).astype(np.float32)
    if family == 'solid':
        return np.ones((size, size), np.float32)
    if family in ('grating', 'plaid'):
        u, _ = _rotated(yy, xx, rng.uniform(0, np.pi))
        wave = np.sin(2 * np.pi * u / rng.uniform(3, 14))
        out = (wave > rng.uniform(-0.4, 0.4)).astype(np.float32) if rng.random() < 0.6 else 0.5 + 0.5 * wave
        if family == 'plaid':
            out = 0.5 * out + 0.5 * texture('grating', rng, size)
        return out
    if family == 'checker':
        u, v = _rotated(yy, xx, rng.uniform(0, np.pi / 2) if rng.random() < 0.5 else 0.0)
        cell = rng.uniform(2, 8)
        return ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)
    if family == 'dots':
        u, v = _rotated(yy, xx, rng.uniform(0, np.pi / 2))
        period = rng.uniform(4, 12)
        radius = rng.uniform(0.2, 0.45) * period
        du, dv = (u % period) - period / 2, (v % period) - period / 2
        return (du**2 + dv**2 <= radius**2).astype(np.float32)
    if family == 'rings':
        cy, cx = rng.uniform(0, size, 2)
        d = np.hypot(yy - yy[0, 0] - cy, xx - xx[0, 0] - cx)
        return ((d // rng.uniform(1.5, 6)) % 2).astype(np.float32)
    if family == 'speckle':
        cell = int(rng.integers(1, 6))
        cells = rng.random((size // cell + 2, ) * 2) < rng.uniform(0.3, 0.7)
        return np.kron(cells, np.ones((cell, cell)))[:size, :size].astype(np.float32)
    if family == 'noise':
        return 0.5 + 0.5 * _smooth_field(rng, size, int(rng.integers(4, 24)))
    raise ValueError(f'unknown texture family {family!r}; expected one of {TEXTURE_FAMILIES}')


def _region(rng, size):
    """A random boolean region covering part of the image."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    kind = rng.integers(0, 4)
    cy, cx = rng.uniform(0.1 * size, 0.9 * size, 2)
    if kind == 0:  # rotated ellipse
        u, v = _rotated(yy - cy, xx - cx, rng.uniform(0, np.pi))
        a, b = rng.uniform(0.08 * size, 0.4 * size, 2)
        return (u / a)**2 + (v / b)**2 <= 1
    if kind == 1:  # convex polygon: the intersection of half-planes tangent to a circle
        radius = rng.uniform(0.12 * size, 0.4 * size)
        inside = np.ones((size, size), bool)
        for angle in np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 8)))):
            inside &= (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle) <= radius
        return inside
    if kind == 2:  # half-plane
        return (xx - cx) * np.cos(a := rng.uniform(0, 2 * np.pi)) + (yy - cy) * np.sin(a) <= 0
    return _smooth_field(rng, size, int(rng.integers(3, 8))) > rng.uniform(0.0, 0.5)  # noise blob


def _colours(rng):
    """Two random colours, of any contrast (low, often: real textures are not all black and white)."""
    c1 = rng.uniform(0, 255, 3)
    return c1, np.clip(c1 + rng.uniform(-255, 255, 3) * rng.uniform(0.15, 1.0), 0, 255)


def render_patchwork(rng, size=64):
    """``(img, masks)``: a (size, size, 3) uint8 patchwork and the boolean masks of its visible regions
    (the background's first), for the VAE's mask loss."""
    def fill():
        c1, c2 = _colours(rng)
        w = texture(TEXTURE_FAMILIES[rng.integers(0, len(TEXTURE_FAMILIES))], rng, size)[..., None]
        return w * c1 + (1 - w) * c2

    img = fill()
    owner = np.zeros((size, size), np.int64)
    for i in range(1, int(rng.integers(2, 7)) + 1):
        region = _region(rng, size)
        img[region] = fill()[region]
        owner[region] = i
    return img.round().clip(0, 255).astype(np.uint8), [owner == i for i in np.unique(owner)]


@functools.lru_cache(maxsize=None)
def sample_images():
    """The images matplotlib ships, as float (H, W, 3) arrays in [0, 255] or 2-D fields (colour-mapped per
    crop)."""
    import matplotlib.cbook as cbook
    images = []
    for name in ('grace_hopper.jpg', 'Minduka_Present_Blue_Pack.png', 'logo2.png'):
        with cbook.get_sample_data(name) as f:
            rgba = Image.open(f).convert('RGBA')
        # transparent pixels over a white page, as matplotlib shows them
        page = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
        images.append(np.asarray(Image.alpha_composite(page, rgba).convert('RGB'), np.float32))
    images.append(cbook.get_sample_data('topobathy.npz')['topo'].astype(np.float32))
    images.append(cbook.get_sample_data('jacksboro_fault_dem.npz')['elevation'].astype(np.float32))
    with cbook.get_sample_data('s1045.ima.gz') as f:
        raw = f.read()
    images.append(np.frombuffer(gzip.decompress(raw) if raw[:2] == b'\x1f\x8b' else raw,
                                np.uint16).reshape(256, 256).astype(np.float32))
    return tuple(images)


def sample_data_crop(rng, size=64):
    """A (size, size, 3) uint8 random crop of one of :func:`sample_images`, at a random scale."""
    import matplotlib
    image = sample_images()[rng.integers(0, len(sample_images()))]
    h, w = image.shape[:2]
    side = int(rng.integers(min(24, h, w), min(h, w) + 1))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = image[y:y + side, x:x + side]
    if crop.ndim == 2:  # a field: normalise and colour-map it
        lo, hi = crop.min(), crop.max()
        crop = matplotlib.colormaps[_COLOUR_MAPS[rng.integers(0, len(_COLOUR_MAPS))]](
            (crop - lo) / max(hi - lo, 1e-6))[..., :3] * 255
    out = np.array(Image.fromarray(crop.astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC))
    return out[:, ::-1].copy() if rng.random() < 0.5 else out


def sample_mix_image(rng, size=64, weights=DEFAULT_WEIGHTS):
    """``(img, masks, source)``: one image of the mix, with the boolean masks of its regions (SynthShapes:
    one per present class; patchwork: one per region; sample data: none)."""
    source = SOURCES[rng.choice(len(SOURCES), p=np.asarray(weights) / np.sum(weights))]
    if source == 'synth_shapes':
        img, label = render_sample(rng, size)
        return img, [label == c for c in np.unique(label)], source
    if source == 'patchwork':
        img, masks = render_patchwork(rng, size)
        return img, masks, source
    return sample_data_crop(rng, size), [], source
