"""The Batch tab: several photos with the same options, each result in a gallery and all of them in one zip.

A file that cannot be processed is listed with its error in the status box; the others still finish. The option
widgets here are shared with the Video tab (`option_widgets`).
"""

from pathlib import Path

import gradio as gr

from codeformer_core.batch import run_batch
from codeformer_core.options import DETECTORS, MAX_UPSCALE
from codeformer_core.pipeline import Pipeline

from .handlers import OptionValues, make_options, user_errors
from .outputs import RequestFiles

PIPELINE_GROUP = "pipeline"
"""Same value as `ui.PIPELINE_GROUP` (not imported: ui imports this module), so a batch queues with the photo
events instead of running beside them."""
TASK_CHOICES = [("Restore", "restore"), ("Colorize", "colorize")]
NO_FILES = "Upload one or more photos first."


def build_batch_tab(pipeline: Pipeline) -> None:
    """The Batch tab's widgets and its event (API name /batch); call inside a gr.Blocks."""
    handler = BatchHandler(pipeline)
    with gr.Tab("Batch"):
        with gr.Row():
            with gr.Column():
                photos = gr.File(file_count="multiple", label="Photos", elem_id="batch-photos")
                task, fidelity = task_widgets("batch")
                with gr.Accordion("Options", open=False):
                    options = option_widgets("batch", aligned=True, upscale=2)
                run = gr.Button("Process all", variant="primary", elem_id="batch-run")
            with gr.Column():
                gallery = gr.Gallery(label="Results", columns=3, height="auto", elem_id="batch-gallery")
                archive = gr.File(label="All results (zip)", interactive=False, elem_id="batch-zip")
                status = gr.Textbox(label="Status", lines=4, interactive=False, elem_id="batch-status")
    run.click(
        handler.run, inputs=[photos, task, fidelity, *options], outputs=[gallery, archive, status],
        api_name="batch", concurrency_id=PIPELINE_GROUP,
    )  # fmt: skip


def task_widgets(prefix: str) -> tuple[gr.Radio, gr.Slider]:
    """Task (restore or colorize: inpaint needs a mask per photo) and fidelity, with elem_ids `<prefix>-...`."""
    task = gr.Radio(TASK_CHOICES, value="restore", label="Task", elem_id=f"{prefix}-task")
    fidelity = gr.Slider(0, 1, value=0.5, step=0.05, label="Fidelity (w)", elem_id=f"{prefix}-fidelity",
                         info="Restore only: 0 favours quality, 1 stays closest to the input.")  # fmt: skip
    return task, fidelity


def option_widgets(prefix: str, *, aligned: bool, upscale: int) -> list[gr.components.Component]:
    """The widgets of `OptionValues`, in its order, with elem_ids `<prefix>-...` (unique on the page). With
    aligned=False the aligned checkbox is left out (a video frame is never an aligned crop)."""
    upscale_widget = gr.Slider(1, MAX_UPSCALE, value=upscale, step=1, precision=0, label="Upscale the whole picture",
                               elem_id=f"{prefix}-upscale")  # fmt: skip
    aligned_widget = [
        gr.Checkbox(False, label="Aligned faces", info="Every photo is a 512x512 face aligned like FFHQ.",
                    elem_id=f"{prefix}-aligned")
    ] if aligned else []  # fmt: skip
    return [
        upscale_widget,
        *aligned_widget,
        gr.Checkbox(False, label="Enhance the background (Real-ESRGAN)", elem_id=f"{prefix}-background-enhance"),
        gr.Checkbox(False, label="Upsample the restored faces (Real-ESRGAN)", elem_id=f"{prefix}-face-upsample"),
        gr.Dropdown(list(DETECTORS), value=DETECTORS[0], label="Face detector", elem_id=f"{prefix}-detector"),
        gr.Checkbox(False, label="Only the face nearest the centre", elem_id=f"{prefix}-only-center-face"),
    ]


class BatchHandler:
    """The function behind the Batch tab and /batch; one instance per app, sharing the app's Pipeline."""

    def __init__(self, pipeline: Pipeline, files: RequestFiles | None = None) -> None:
        self.pipeline = pipeline
        self.files = files if files is not None else RequestFiles()

    def run(
        self,
        photos: list[str] | None,
        task: str,
        fidelity: float,
        upscale: int,
        aligned: bool,
        background_enhance: bool,
        face_upsample: bool,
        detector: str,
        only_center_face: bool,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple[list[tuple[str, str]], str | None, str]:
        """-> (gallery of (PNG, file name), the zip or None when nothing succeeded, status with one line per error)."""
        if not photos:
            raise gr.Error(NO_FILES)
        values = OptionValues(upscale, aligned, background_enhance, face_upsample, detector, only_center_face)
        options = make_options(task, fidelity, values)
        # Gradio keeps each upload under its original file name: that name is what the user recognises.
        inputs = [(Path(photo).name, Path(photo)) for photo in photos]

        def show(index: int, count: int, name: str) -> None:
            progress((index - 1, count), desc=f"Photo {index} of {count}: {name}", unit="photos")

        with user_errors():
            result = run_batch(self.pipeline, inputs, options, self.files.new_request(), progress=show)
        gallery = [(str(item.output), item.name) for item in result.items]
        return gallery, str(result.archive) if result.archive else None, result.summary()
