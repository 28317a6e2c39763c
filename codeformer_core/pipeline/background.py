"""The photo around the faces, at output size: how far to upscale it, and with what.

Real-ESRGAN enlarges the background when asked (and the device can afford it); otherwise the photo is resized
bilinearly, as the official paste-back resizes its input when no upsampler is given.
"""

from typing import TYPE_CHECKING

import cv2
import torch

from ..layouts import BGRImage

if TYPE_CHECKING:  # realesrgan (and basicsr) load only when a run asks for the upsampler
    from ..network.realesrgan import BackgroundUpsampler

MAX_OUTPUT_SIDE = 8192
"""The upscale factor is lowered so the output's longer side stays within this."""
MAX_CPU_BACKGROUND_PIXELS = 2_000_000
"""Above this, Real-ESRGAN would take minutes on a CPU (bench/README.md)."""


def plan_upscale(shape: tuple[int, ...], requested: int) -> tuple[int, str | None]:
    """The upscale for an image of `shape`: `requested`, lowered until the output fits MAX_OUTPUT_SIDE, and the
    sentence that says so (None when nothing was lowered)."""
    upscale = requested
    while upscale > 1 and max(shape[:2]) * upscale > MAX_OUTPUT_SIDE:
        upscale -= 1
    if upscale == requested:
        return upscale, None
    return upscale, f"Upscale lowered from {requested} to {upscale}: the output would exceed {MAX_OUTPUT_SIDE} px."


def realesrgan_refusal(shape: tuple[int, ...], device: torch.device) -> str | None:
    """Why Real-ESRGAN is not used for a background of `shape` on `device` (a sentence), or None when it is."""
    height, width = shape[:2]
    if device.type != "cpu" or height * width <= MAX_CPU_BACKGROUND_PIXELS:
        return None
    return (
        f"Background enhancement skipped: {width}x{height} is above {MAX_CPU_BACKGROUND_PIXELS / 1e6:g} megapixels,"
        " which would take minutes on a CPU."
    )


def upscaled_background(
    bgr: BGRImage, upscale: int, upsampler: "BackgroundUpsampler | None", before_enlarging: BGRImage
) -> BGRImage:
    """`bgr` (the working image) enlarged `upscale` times: bilinearly, or by Real-ESRGAN when given one.

    Real-ESRGAN runs on `before_enlarging`, the photo before a small photo's enlargement, and its result is resized
    (Lanczos) to the output size, as the official script does: the enlargement adds pixels, not detail, and would
    multiply the upsampler's cost.
    """
    if upscale == 1:
        return bgr
    size = (bgr.shape[1] * upscale, bgr.shape[0] * upscale)
    if upsampler is None:
        return cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)
    enhanced = upsampler.upsample(before_enlarging, outscale=upscale)
    if enhanced.shape[1::-1] == size:
        return enhanced
    return cv2.resize(enhanced, size, interpolation=cv2.INTER_LANCZOS4)
