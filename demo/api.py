"""The named endpoints /restore, /colorize and /inpaint for `gradio_client`.

Their widgets are never shown: they only give the endpoints their types, defaults and labels (Gradio takes the
parameter names from the handlers' signatures). Images arrive as bytes so that `codeformer_core.images` is the only
decoder that sees them. /restore's face choices come last, with
defaults, so clients written before them keep working; `exact` comes after them on every endpoint.
"""

import dataclasses
from typing import Any, NamedTuple

import gradio as gr

from codeformer_core.options import (
    DETECTORS,
    MAX_UPSCALE,
    RestoreOptions,
    parse_face_fidelities,
    parse_face_indices,
)
from codeformer_core.pipeline import ImageRestorer
from codeformer_core.report import Report

from .outputs import RequestFiles
from .running import OptionValues, make_options, read_mask_upload, read_upload, run_and_write, user_errors
from .widgets import PIPELINE_GROUP

NO_IMAGE = "No image was sent: pass the photo as handle_file(path)."


class ApiResult(NamedTuple):
    """What every endpoint answers, in this order: the result PNG's path and the report's summary."""

    result: Any
    report: Any


def build_api_endpoints(pipeline: ImageRestorer, files: RequestFiles) -> None:
    """The hidden widgets and the three endpoints; call inside a gr.Blocks."""
    api = ApiHandlers(pipeline, files)
    with gr.Column(visible=False):
        image = gr.File(type="binary", label="image")
        mask = gr.File(type="binary", label="mask")
        fidelity = gr.Slider(0, 1, value=0.5, label="fidelity")
        upscale = gr.Slider(1, MAX_UPSCALE, value=2, step=1, precision=0, label="upscale")
        aligned = gr.Checkbox(False, label="aligned")
        background_enhance = gr.Checkbox(False, label="background_enhance")
        face_upsample = gr.Checkbox(False, label="face_upsample")
        detector = gr.Dropdown(list(DETECTORS), value=DETECTORS[0], label="detector")
        only_center_face = gr.Checkbox(False, label="only_center_face")
        face_fidelities = gr.Textbox("", label="face_fidelities")
        skip_faces = gr.Textbox("", label="skip_faces")
        exact = gr.Checkbox(False, label="exact")
        outputs = ApiResult(result=gr.Image(type="filepath", format="png", label="result"),
                            report=gr.Textbox(label="report"))
    settings = [upscale, aligned, background_enhance, face_upsample, detector, only_center_face]
    endpoints = [
        ("restore", api.restore, [image, fidelity, *settings, face_fidelities, skip_faces, exact]),
        ("colorize", api.colorize, [image, *settings, exact]),
        ("inpaint", api.inpaint, [image, *settings, mask, exact]),
    ]
    for name, handler, inputs in endpoints:
        gr.on([], handler, inputs=inputs, outputs=list(outputs), api_name=name, concurrency_id=PIPELINE_GROUP)


class ApiHandlers:
    """The functions behind the endpoints; one per app, sharing its Pipeline and RequestFiles."""

    def __init__(self, pipeline: ImageRestorer, files: RequestFiles) -> None:
        self.pipeline = pipeline
        self.files = files

    def restore(
        self,
        image: bytes,
        fidelity: float,
        upscale: int,
        aligned: bool,
        background_enhance: bool,
        face_upsample: bool,
        detector: str,
        only_center_face: bool,
        face_fidelities: str = "",
        skip_faces: str = "",
        exact: bool = False,
        progress: gr.Progress = gr.Progress(),
    ) -> ApiResult:
        """/restore -> (restored PNG, report). Faces are numbered from 0 in the order the report lists them (stable
        for one image and detector). face_fidelities: faces with their own w, e.g. "1=0.8, 2=0.3"; skip_faces:
        faces that keep their original pixels, e.g. "0, 3". exact: float32 through the whole network,
        bit-faithful to the official code (slower)."""
        values = OptionValues(upscale, aligned, background_enhance, face_upsample, detector, only_center_face, exact)
        options = make_options("restore", fidelity, values)
        with user_errors():
            options = dataclasses.replace(
                options,
                face_fidelities=parse_face_fidelities(face_fidelities or "", "face_fidelities"),
                skip_faces=parse_face_indices(skip_faces or "", "skip_faces"),
            )
        return self._run(image, None, options, progress)

    def colorize(
        self,
        image: bytes,
        upscale: int,
        aligned: bool,
        background_enhance: bool,
        face_upsample: bool,
        detector: str,
        only_center_face: bool,
        exact: bool = False,
        progress: gr.Progress = gr.Progress(),
    ) -> ApiResult:
        """/colorize -> (colorized PNG, report)."""
        values = OptionValues(upscale, aligned, background_enhance, face_upsample, detector, only_center_face, exact)
        return self._run(image, None, make_options("colorize", 0.0, values), progress)

    def inpaint(
        self,
        image: bytes,
        upscale: int,
        aligned: bool,
        background_enhance: bool,
        face_upsample: bool,
        detector: str,
        only_center_face: bool,
        mask: bytes | None = None,
        exact: bool = False,
        progress: gr.Progress = gr.Progress(),
    ) -> ApiResult:
        """/inpaint -> (inpainted PNG, report). mask (optional): white marks the holes; without it, the image's
        pure-white pixels are the holes."""
        values = OptionValues(upscale, aligned, background_enhance, face_upsample, detector, only_center_face, exact)
        return self._run(image, mask, make_options("inpaint", 1.0, values), progress)

    def _run(
        self, data: bytes | None, mask_data: bytes | None, options: RestoreOptions, progress: gr.Progress
    ) -> ApiResult:
        """The image first (a missing one is the first thing to say), then the mask, then the pipeline."""
        if data is None:
            raise gr.Error(NO_IMAGE)
        image = read_upload(data)
        mask = read_mask_upload(mask_data) if mask_data is not None else None
        result, files = run_and_write(self.pipeline, self.files, image, mask, options, progress)
        return ApiResult(result=str(files.download), report=result.report.summary() + _face_list(result.report))


def _face_list(report: Report) -> str:
    """Where each face is, by the index the face choices take (the page shows the faces; a client needs this)."""
    if not report.faces:
        return ""
    boxes = "; ".join(f"{index}: {', '.join(f'{v:g}' for v in face.box)}" for index, face in enumerate(report.faces))
    return f"\nFaces by index (box x1, y1, x2, y2 in input pixels): {boxes}."
