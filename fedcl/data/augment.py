"""The papers' train-time augmentation: random crop with zero padding, random horizontal flip.

``torchvision.transforms.RandomCrop(size, padding=p)`` then
``RandomHorizontalFlip()`` (FOT's mini-ImageNet loader; the usual CIFAR recipe),
done on uint8 batches with numpy so it is seeded by the caller's generator
alone: the stream seeds it by (run seed, client, round, task), so a client
sees the same augmented data in every process and run with that seed, and a
different draw every round. Only clients' training data are augmented.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedcl.config.schema import Augment


def augment_options(spec: Augment | None) -> dict[str, Any] | None:
    """``stream.augment`` as :func:`crop_flip`'s keyword arguments, or None when it does nothing."""
    if spec is None or (spec.crop_padding == 0 and not spec.hflip):
        return None
    return {"crop_padding": spec.crop_padding, "hflip": spec.hflip}


def crop_flip(x: np.ndarray, rng: np.random.Generator, crop_padding: int, hflip: bool) -> np.ndarray:
    """Randomly crop (after ``crop_padding`` zero pixels on each side) and flip a uint8 ``N x C x H x W`` batch.

    Per sample, the crop offset is uniform in ``0..2 * crop_padding`` on each
    axis and the flip happens with probability 1/2, as torchvision draws them.
    Grey ``N x H x W`` input is accepted and returned in the same shape.
    """
    grey = x.ndim == 3
    if grey:
        x = x[:, None]
    n, c, h, w = x.shape
    out = np.array(x, copy=True)
    if crop_padding > 0 and n:
        p = crop_padding
        padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        top = np.asarray(rng.integers(0, 2 * p + 1, size=n))
        left = np.asarray(rng.integers(0, 2 * p + 1, size=n))
        rows = (top[:, None] + np.arange(h))[:, None, :, None]
        cols = (left[:, None] + np.arange(w))[:, None, None, :]
        out = padded[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None], rows, cols]
    if hflip and n:
        flip = rng.random(n) < 0.5
        out[flip] = out[flip][..., ::-1]
    return out[:, 0] if grey else out
