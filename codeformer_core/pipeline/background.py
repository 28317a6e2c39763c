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


def upscaled_background(bgr: BGRImage, upscale: int, upsampler: "BackgroundUpsampler | None") -> BGRImage:
    """`bgr` enlarged `upscale` times: by Real-ESRGAN when given one, else bilinearly."""
    if upsampler is not None and upscale > 1:
        return upsampler.upsample(bgr, outscale=upscale)
    if upscale > 1:
        return cv2.resize(bgr, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_LINEAR)
    return bgr
