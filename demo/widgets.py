"""Widgets and settings shared by the Photo, Batch and Video tabs."""

import gradio as gr

from codeformer_core.options import DETECTORS, MAX_UPSCALE

PIPELINE_GROUP = "pipeline"
"""concurrency_id of every event that runs the network: the queue's limit bounds them all together."""
BATCH_TASK_CHOICES = [("Restore", "restore"), ("Colorize", "colorize")]
"""Inpaint is left out of batches and videos: it needs a mask per picture."""


def _elem_id(prefix: str | None, name: str) -> str:
    return f"{prefix}-{name}" if prefix else name


def task_widgets(prefix: str) -> tuple[gr.Radio, gr.Slider]:
    """Task (restore or colorize) and fidelity for the Batch and Video tabs, with elem_ids `<prefix>-...`."""
    task = gr.Radio(BATCH_TASK_CHOICES, value="restore", label="Task", elem_id=f"{prefix}-task")
    fidelity = gr.Slider(0, 1, value=0.5, step=0.05, label="Fidelity (w)", elem_id=f"{prefix}-fidelity",
                         info="Restore only: 0 favours quality, 1 stays closest to the input.")  # fmt: skip
    return task, fidelity


def option_widgets(prefix: str | None, *, aligned: bool, upscale: int) -> list[gr.components.Component]:
    """The widgets of `running.OptionValues`, in its order, with elem_ids `<prefix>-...` (unique on the page;
    no prefix for the Photo tab). With aligned=False the aligned checkbox is left out (a video frame is never an
    aligned crop)."""
    upscale_widget = gr.Slider(1, MAX_UPSCALE, value=upscale, step=1, precision=0, label="Upscale the whole picture",
                               info="Ignored for an aligned face.", elem_id=_elem_id(prefix, "upscale"))  # fmt: skip
    aligned_widget = [
        gr.Checkbox(False, label="Aligned face", info="A 512x512 face aligned like FFHQ: skip detection.",
                    elem_id=_elem_id(prefix, "aligned"))
    ] if aligned else []  # fmt: skip
    return [
        upscale_widget,
        *aligned_widget,
        gr.Checkbox(False, label="Enhance the background (Real-ESRGAN)",
                    elem_id=_elem_id(prefix, "background-enhance")),
        gr.Checkbox(False, label="Upsample the restored faces (Real-ESRGAN)",
                    elem_id=_elem_id(prefix, "face-upsample")),
        gr.Dropdown(list(DETECTORS), value=DETECTORS[0], label="Face detector", elem_id=_elem_id(prefix, "detector")),
        gr.Checkbox(False, label="Only the face nearest the centre", elem_id=_elem_id(prefix, "only-center-face")),
        gr.Checkbox(False, label="Exact float32 (slower)", elem_id=_elem_id(prefix, "exact"),
                    info="Bit-faithful to the official code. Off, the decoder runs in bf16 where this machine computes "
                         "it natively; the faces keep the same codes either way."),
    ]
