"""Keeping grey photos grey: the official code's treatment of faces restored from a grey (or sepia) input.

The network adds colour casts to grey faces, so the official helper (`add_restored_face`) turns each restored face
grey with the ITU-R 601 weights it uses (0.2989, 0.5870, 0.1140, kept as floats), then matches each channel's mean
and standard deviation to the face it was given (`adain_npy`). The second step is what keeps a sepia or
slightly toned photo's tint, which a plain grey conversion would lose.
"""

import numpy as np

from ..layouts import BGRImage, FaceCrop

_RED, _GREEN, _BLUE = 0.2989, 0.5870, 0.1140
_VARIANCE_EPSILON = 1e-5
"""Added to each variance before its square root, as the official `calc_mean_std` does."""


def luminance(bgr: BGRImage) -> np.ndarray:
    """H x W float64 grey of a BGR uint8 image, with the official weights (no rounding)."""
    pixels = bgr.astype(np.float64)
    return _RED * pixels[..., 2] + _GREEN * pixels[..., 1] + _BLUE * pixels[..., 0]


def to_gray(bgr: BGRImage) -> BGRImage:
    """The image grey in three equal channels, rounded to uint8."""
    gray = np.clip(np.rint(luminance(bgr)), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., np.newaxis], 3, axis=2)


def gray_like_input(restored: FaceCrop, given: FaceCrop) -> FaceCrop:
    """`restored` turned grey, then each channel given the mean and standard deviation of that channel of `given`
    (the face the network was given). Rounded and clipped to uint8: the official keeps the floats, even those the
    matching pushes outside 0-255, through its blend, where they make the fade overshoot."""
    gray = luminance(restored)
    gray_mean, gray_std = gray.mean(), np.sqrt(gray.var() + _VARIANCE_EPSILON)
    channels = given.reshape(-1, given.shape[2]).astype(np.float64)
    given_mean = channels.mean(axis=0)
    given_std = np.sqrt(channels.var(axis=0) + _VARIANCE_EPSILON)
    matched = (gray[..., np.newaxis] - gray_mean) / gray_std * given_std + given_mean
    return np.clip(np.rint(matched), 0, 255).astype(np.uint8)
