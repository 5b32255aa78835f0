"""The broad unlabelled mix the tiny VAE can be fitted on: its three sources, determinism, the patchwork's
region masks and the images matplotlib ships."""
import numpy as np
import pytest

from mmseg_digseg.datasets.synth_shapes import render_sample
from mmseg_digseg.datasets.unlabelled_mix import (SOURCES, TEXTURE_FAMILIES, render_patchwork, sample_data_crop,
                                                  sample_images, sample_mix_image, texture)


def test_every_source_gives_64px_rgb_uint8_and_is_deterministic():
    seen = set()
    for seed in range(40):
        img, masks, source = sample_mix_image(np.random.default_rng(seed))
        again, _, source_again = sample_mix_image(np.random.default_rng(seed))
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8 and img.flags.writeable
        np.testing.assert_array_equal(img, again)
        assert source == source_again
        assert all(m.shape == (64, 64) and m.dtype == bool for m in masks)
        seen.add(source)
    assert seen == set(SOURCES)


def test_weights_pick_the_source():
    rng = np.random.default_rng(0)
    assert {sample_mix_image(rng, weights=(0, 1, 0))[2] for _ in range(10)} == {'patchwork'}
    # a SynthShapes draw is the 6-class scene the same generator state renders, with one mask per present class
    img, masks, source = sample_mix_image(np.random.default_rng(5), weights=(1, 0, 0))
    rng = np.random.default_rng(5)
    rng.choice(3, p=[1.0, 0.0, 0.0])  # the source draw
    ref_img, ref_label = render_sample(rng)
    assert source == 'synth_shapes'
    np.testing.assert_array_equal(img, ref_img)
    assert len(masks) == len(np.unique(ref_label))
    assert (np.sum(masks, axis=0) == 1).all()


def test_patchwork_regions_partition_the_image():
    for seed in range(10):
        img, masks = render_patchwork(np.random.default_rng(seed))
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        # every pixel belongs to exactly one visible region (the background or one painted over it)
        assert 1 <= len(masks) <= 7
        assert (np.sum(masks, axis=0) == 1).all()
        assert all(m.any() for m in masks)


def test_texture_families():
    for family in TEXTURE_FAMILIES:
        for seed in range(5):
            w = texture(family, np.random.default_rng(seed), 64)
            assert w.shape == (64, 64) and 0 <= w.min() and w.max() <= 1
            if family == 'solid':
                assert (w == 1).all()
            else:  # a pattern, not a flat colour
                assert w.std() > 0.05, (family, seed)
    with pytest.raises(ValueError, match='unknown texture family .*grating'):
        texture('stripes', np.random.default_rng(0), 64)


def test_sample_data_is_what_matplotlib_ships():
    images = sample_images()
    assert len(images) == 6
    assert images[0].shape == (600, 512, 3)  # grace_hopper.jpg
    assert images[3].shape == (91, 120) and images[5].shape == (256, 256)  # topobathy, the MRI slice
    assert images[5].max() > 1000  # 16-bit MRI values, decompressed
    crops = [sample_data_crop(np.random.default_rng(seed)) for seed in range(12)]
    assert all(c.shape == (64, 64, 3) and c.dtype == np.uint8 for c in crops)
    assert len({c.tobytes() for c in crops}) == len(crops)
