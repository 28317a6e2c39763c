"""The named endpoints /restore, /colorize and /inpaint for `gradio_client`.

Their widgets are never shown: they only give the endpoints their types, defaults and labels (Gradio takes the
parameter names from the handlers' signatures, which `takes_options` writes for the shared options). Images arrive
as bytes so that `codeformer_core.images` is the only decoder that sees them. /restore's face choices come last,
with defaults, so clients written before them keep working; `exact`, added after them, comes after them on every
endpoint.
"""

from typing import Any, NamedTuple

import gradio as gr

from codeformer_core.options import RestoreOptions, parse_face_fidelities, parse_face_indices
from codeformer_core.pipeline import ImageRestorer, RestoreRequest
from codeformer_core.report import Report

from .options_group import OptionValues, api_option_widgets, takes_options
from .outputs import RequestFiles
from .running import read_mask_upload, read_upload, run_and_write, user_errors
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
        *settings, exact = api_option_widgets()
        face_fidelities = gr.Textbox("", label="face_fidelities")
        skip_faces = gr.Textbox("", label="skip_faces")
        outputs = ApiResult(result=gr.Image(type="filepath", format="png", label="result"),
                            report=gr.Textbox(label="report"))
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

    @takes_options(last=("exact",))
    def restore(
        self,
        image: bytes,
        fidelity: float,
        options: OptionValues,
        face_fidelities: str = "",
        skip_faces: str = "",
        progress: gr.Progress = gr.Progress(),
    ) -> ApiResult:
        """/restore -> (restored PNG, report). Faces are numbered from 0 in the order the report lists them (stable
        for one image and detector). face_fidelities: faces with their own w, e.g. "1=0.8, 2=0.3"; skip_faces:
        faces that keep their original pixels, e.g. "0, 3". exact: float32 through the whole network,
        within the golden bounds of the official code (slower)."""
        with user_errors():
            choices = dict(face_fidelities=parse_face_fidelities(face_fidelities or "", "face_fidelities"),
                           skip_faces=parse_face_indices(skip_faces or "", "skip_faces"))  # fmt: skip
        return self._run(image, None, options.restore_options("restore", fidelity, **choices), progress)

    @takes_options(last=("exact",))
    def colorize(self, image: bytes, options: OptionValues, progress: gr.Progress = gr.Progress()) -> ApiResult:
        """/colorize -> (colorized PNG, report)."""
        return self._run(image, None, options.restore_options("colorize", 0.0), progress)

    @takes_options(last=("exact",))
    def inpaint(
        self, image: bytes, options: OptionValues, mask: bytes | None = None, progress: gr.Progress = gr.Progress()
    ) -> ApiResult:
        """/inpaint -> (inpainted PNG, report). mask (optional): white marks the holes; without it, the image's
        pure-white pixels are the holes."""
        return self._run(image, mask, options.restore_options("inpaint", 1.0), progress)

    def _run(
        self, data: bytes | None, mask_data: bytes | None, options: RestoreOptions, progress: gr.Progress
    ) -> ApiResult:
        """The image first (a missing one is the first thing to say), then the mask, then the pipeline."""
        if data is None:
            raise gr.Error(NO_IMAGE)
        image = read_upload(data)
        mask = read_mask_upload(mask_data) if mask_data is not None else None
        result, files = run_and_write(self.pipeline, self.files, RestoreRequest(image, options, mask), progress)
        return ApiResult(result=str(files.download), report=result.report.summary() + _face_list(result.report))


def _face_list(report: Report) -> str:
    """Where each face is, by the index the face choices take (the page shows the faces; a client needs this)."""
    if not report.faces:
        return ""
    boxes = "; ".join(f"{index}: {', '.join(f'{v:g}' for v in face.box)}" for index, face in enumerate(report.faces))
    return f"\nFaces by index (box x1, y1, x2, y2 in input pixels): {boxes}."
