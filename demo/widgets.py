"""Widgets and settings shared by the Photo, Batch and Video tabs."""

import gradio as gr

PIPELINE_GROUP = "pipeline"
"""concurrency_id of every event that runs the network: the queue's limit bounds them all together."""
BATCH_TASK_CHOICES = [("Restore", "restore"), ("Colorize", "colorize")]
"""Inpaint is left out of batches and videos: it needs a mask per picture."""


def task_widgets(prefix: str) -> tuple[gr.Radio, gr.Slider]:
    """Task (restore or colorize) and fidelity for the Batch and Video tabs, with elem_ids `<prefix>-...`."""
    task = gr.Radio(BATCH_TASK_CHOICES, value="restore", label="Task", elem_id=f"{prefix}-task")
    fidelity = gr.Slider(0, 1, value=0.5, step=0.05, label="Fidelity (w)", elem_id=f"{prefix}-fidelity",
                         info="Restore only: 0 favours quality, 1 stays closest to the input.")  # fmt: skip
    return task, fidelity
