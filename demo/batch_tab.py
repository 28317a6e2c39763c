"""The Batch tab: several photos with the same options, each result in a gallery and all of them in one zip.

A file that cannot be processed is listed with its error in the status box; the others still finish. There are no
face-by-face controls here: the tab shows results, not each photo's faces, and the pipeline keeps only the last few
photos' work, so a choice in an early photo would redo it from scratch; the Photo tab and the CLI have them.
"""

from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr

from codeformer_core.batch import run_batch
from codeformer_core.pipeline import ImageRestorer

from .options_group import OptionValues, option_widgets, takes_options
from .outputs import RequestFiles
from .running import user_errors
from .widgets import PIPELINE_GROUP, task_widgets

NO_FILES = "Upload one or more photos first."


class BatchResult(NamedTuple):
    """What the tab (and /batch) shows, by name."""

    gallery: Any  # (result PNG, file name) per photo that succeeded
    archive: Any  # the zip of every result, None when nothing succeeded
    status: Any  # the summary, one line per file that failed


def build_batch_tab(pipeline: ImageRestorer, files: RequestFiles, *, max_photos: int | None) -> None:
    """The Batch tab's widgets and its event (API name /batch); call inside a gr.Blocks. max_photos: the most
    photos one batch may hold (None: any number)."""
    handler = BatchHandler(pipeline, files, max_photos=max_photos)
    label = f"Photos (up to {max_photos})" if max_photos else "Photos"
    with gr.Tab("Batch"):
        with gr.Row():
            with gr.Column():
                photos = gr.File(file_count="multiple", label=label, elem_id="batch-photos")
                task, fidelity = task_widgets("batch")
                with gr.Accordion("Options", open=False):
                    options = option_widgets("batch", aligned=True, upscale=2)
                run = gr.Button("Process all", variant="primary", elem_id="batch-run")
            with gr.Column():
                outputs = BatchResult(
                    gallery=gr.Gallery(label="Results", columns=3, height="auto", elem_id="batch-gallery"),
                    archive=gr.File(label="All results (zip)", interactive=False, elem_id="batch-zip"),
                    status=gr.Textbox(label="Status", lines=4, interactive=False, elem_id="batch-status"),
                )
    run.click(
        handler.run, inputs=[photos, task, fidelity, *options], outputs=list(outputs),
        api_name="batch", concurrency_id=PIPELINE_GROUP,
    )  # fmt: skip


class BatchHandler:
    """The function behind the Batch tab and /batch; one per app, sharing its Pipeline and RequestFiles."""

    def __init__(self, pipeline: ImageRestorer, files: RequestFiles, *, max_photos: int | None) -> None:
        self.pipeline = pipeline
        self.files = files
        self.max_photos = max_photos

    @takes_options(last=("exact",))
    def run(
        self,
        photos: list[str] | None,
        task: str,
        fidelity: float,
        options: OptionValues,
        progress: gr.Progress = gr.Progress(),
    ) -> BatchResult:
        """Every photo through the pipeline with the same options; a failure is listed and the others finish."""
        if not photos:
            raise gr.Error(NO_FILES)
        restore_options = options.restore_options(task, fidelity)
        # Gradio keeps each upload under its original file name: that name is what the user recognises.
        inputs = [(Path(photo).name, Path(photo)) for photo in photos]

        def show(index: int, count: int, name: str) -> None:
            progress((index - 1, count), desc=f"Photo {index} of {count}: {name}", unit="photos")

        with user_errors():
            result = run_batch(self.pipeline, inputs, restore_options, self.files.new_request(), progress=show,
                               max_photos=self.max_photos)  # fmt: skip
        return BatchResult(
            gallery=[(str(item.output), item.name) for item in result.items],
            archive=str(result.archive) if result.archive else None,
            status=result.summary(),
        )
