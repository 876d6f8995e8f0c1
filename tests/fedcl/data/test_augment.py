"""Random crop with zero padding and horizontal flip, as torchvision's RandomCrop(padding) + RandomHorizontalFlip."""

from __future__ import annotations

import numpy as np

from fedcl.config.schema import Augment
from fedcl.data.augment import augment_options, crop_flip


def test_crop_matches_padded_window_and_flip() -> None:
    # Prepare
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 3, 8, 6), dtype=np.uint8)
    # Execute
    out = crop_flip(x, np.random.default_rng(5), crop_padding=2, hflip=True)
    # Assert: each output is a window of the zero-padded image at the drawn offset, flipped when drawn
    draw = np.random.default_rng(5)
    top, left, flip = draw.integers(0, 5, 64), draw.integers(0, 5, 64), draw.random(64) < 0.5
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for i in range(64):
        want = padded[i, :, top[i] : top[i] + 8, left[i] : left[i] + 6]
        np.testing.assert_array_equal(out[i], want[..., ::-1] if flip[i] else want)
    assert out.dtype == np.uint8 and out.shape == x.shape
    assert 16 < flip.sum() < 48 and len(set(top.tolist())) == 5  # offsets span 0..2p, flips about half


def test_identity_settings_and_grey() -> None:
    x = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    np.testing.assert_array_equal(crop_flip(x, np.random.default_rng(0), crop_padding=0, hflip=False), x)
    flipped = crop_flip(x, np.random.default_rng(0), crop_padding=0, hflip=True)
    assert flipped.shape == (2, 4, 4)
    assert all(np.array_equal(f, g) or np.array_equal(f, g[:, ::-1]) for f, g in zip(flipped, x, strict=True))


def test_off_values() -> None:
    assert augment_options(None) is None
    assert augment_options(Augment(crop_padding=0, hflip=False)) is None
    assert augment_options(Augment(crop_padding=4, hflip=True)) == {"crop_padding": 4, "hflip": True}
    assert augment_options(Augment(crop_padding=0, hflip=True)) == {"crop_padding": 0, "hflip": True}
