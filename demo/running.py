"""From the app's widgets to the engine and back, for every tab and endpoint.

Uploads become a `LoadedImage` (always through `codeformer_core.images`, which enforces the size limits) and, for
inpaint, a hole mask (the option widgets' values become `RestoreOptions` in `options_group.py`); `run_and_write`
runs the shared pipeline and writes the PNGs into a fresh per-request directory. Engine errors become `gr.Error`
with the engine's one-line message.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import gradio as gr
import numpy as np

from codeformer_core.errors import CodeFormerError
from codeformer_core.faces.inpaint import hole_mask
from codeformer_core.images import LoadedImage, finish_output, read_image, read_image_array, write_png
from codeformer_core.layouts import Mask
from codeformer_core.pipeline import ImageRestorer, Progress, RestoreRequest
from codeformer_core.report import RestoreResult

from .outputs import RequestFiles

PREVIEW_MAX_SIDE = 2048
"""The before/after slider shows at most this many pixels per side; the download keeps the full size."""
RESULT_STEMS = {"restore": "restored", "colorize": "colorized", "inpaint": "inpainted"}
NO_PHOTO = "Upload a photo first, or pick one of the examples below the button."
NO_HOLES = (
    "There is nothing to inpaint: paint over the damaged parts with the white brush, or upload a photo whose holes"
    " are pure white (255, 255, 255)."
)


@dataclass(frozen=True)
class ResultFiles:
    before: Path  # the input at the preview size, for the slider
    after: Path  # the result at the preview size, for the slider
    download: Path  # the full-size result
    faces: list[Path]


@contextmanager
def user_errors(prefix: str = "") -> Iterator[None]:
    """The engine's refusals as a message in the page (its messages are written for users), after `prefix` when
    the message alone would not say which input it is about."""
    try:
        yield
    except CodeFormerError as error:
        raise gr.Error(f"{prefix}{error}", print_exception=False) from error


def read_upload(source: bytes | str | os.PathLike) -> LoadedImage:
    """An uploaded file (its bytes, or the path Gradio stored it at) as a LoadedImage, or a one-line gr.Error."""
    with user_errors():
        return read_image(source)


def read_mask_upload(source: bytes) -> Mask:
    """A mask file for the API: white (> 127 after conversion to gray) marks the holes. A refusal names the mask,
    since the same message could be about the image."""
    with user_errors("mask: "):
        loaded = read_image(source)
    gray = cv2.cvtColor(loaded.bgr, cv2.COLOR_BGR2GRAY)
    return (gray > 127).astype(np.float32)


def editor_image_and_mask(value: dict[str, Any]) -> tuple[LoadedImage, Mask]:
    """The ImageEditor's value (RGBA numpy background and layers) as the photo and its holes.

    Holes are everything painted on a layer (alpha > 0, whatever the colour) plus the photo's own pure-white pixels,
    so strokes already in an uploaded photo and strokes painted in the browser both count.
    """
    background = value.get("background")
    if background is None:
        raise gr.Error(NO_PHOTO)
    if background.ndim == 3 and background.shape[2] == 4 and (background[..., 3] == 255).all():
        background = background[..., :3]  # the canvas always exports alpha; an opaque photo should not carry it
    with user_errors():
        image = read_image_array(background, channel_order="RGB")
    height, width = image.bgr.shape[:2]
    holes = hole_mask(image.bgr, None).astype(bool)
    for layer in value.get("layers") or []:  # H x W x 4: the editor runs in RGBA mode
        painted = (layer[..., 3] > 0).astype(np.uint8)
        if painted.shape != (height, width):
            painted = cv2.resize(painted, (width, height), interpolation=cv2.INTER_NEAREST)
        holes |= painted.astype(bool)
    return image, holes.astype(np.float32)


def require_holes(image: LoadedImage, mask: Mask | None) -> None:
    """Inpainting without a hole would run the network for nothing: say so instead."""
    with user_errors():  # a mask that is not single-channel
        holes = hole_mask(image.bgr, mask)
    if not holes.any():
        raise gr.Error(NO_HOLES)


def preview_pair(before: LoadedImage, output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The input resized to the output's size and the output, both shrunk to PREVIEW_MAX_SIDE: the slider needs
    two images of one size, and a 8000-pixel PNG would only slow the page down."""
    height, width = output.shape[:2]
    scale = min(1.0, PREVIEW_MAX_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    after = output if scale == 1.0 else cv2.resize(output, size, interpolation=cv2.INTER_AREA)
    enlarging = size[0] > before.bgr.shape[1]
    before_bgr = cv2.resize(before.bgr, size, interpolation=cv2.INTER_CUBIC if enlarging else cv2.INTER_AREA)
    return finish_output(before_bgr, before), after


def write_result_files(result: RestoreResult, before: LoadedImage, task: str, directory: Path) -> ResultFiles:
    download = write_png(result.image, directory, RESULT_STEMS[task])
    before_preview, after_preview = preview_pair(before, result.image)
    after = download if after_preview is result.image else write_png(after_preview, directory, "after")
    faces = [write_png(face, directory, f"face{index + 1}") for index, face in enumerate(result.faces)]
    return ResultFiles(write_png(before_preview, directory, "before"), after, download, faces)


def progress_callback(progress: gr.Progress) -> Progress:
    def report(fraction: float, message: str) -> None:
        progress(min(max(fraction, 0.0), 1.0), desc=message)

    return report


def run_and_write(
    pipeline: ImageRestorer, files: RequestFiles, request: RestoreRequest, progress: gr.Progress
) -> tuple[RestoreResult, ResultFiles]:
    """One pipeline run for an event, its result written as PNGs; a refusal becomes a one-line gr.Error."""
    if request.options.task == "inpaint":
        require_holes(request.image, request.mask)
    progress(0.0, desc="Starting")
    with user_errors():
        result = pipeline.run(request, progress=progress_callback(progress))
        written = write_result_files(result, request.image, request.options.task, files.new_request())
    return result, written
