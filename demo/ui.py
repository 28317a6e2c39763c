"""The page: layout and event wiring only. What the events do is in `handlers.py`.

Every model-running event shares one concurrency group, so the queue's limit bounds them all together. The
Photo, Batch and Video tabs sit side by side.
"""

import gradio as gr

from codeformer_core.options import DETECTORS, MAX_UPSCALE
from codeformer_core.pipeline import Pipeline

from .batch_tab import build_batch_tab
from .examples import bundled_examples
from .handlers import PhotoHandlers
from .notices import missing_weights_notice
from .video_tab import build_video_tab
from .widgets import PIPELINE_GROUP, option_widgets

DELETE_CACHE = (1800, 3600)
"""Every 30 minutes, Gradio deletes the files it cached for the page (uploads, results) once they are 1 hour old."""
TASK_CHOICES = [("Restore", "restore"), ("Colorize", "colorize"), ("Inpaint", "inpaint")]
INTRO = """# CodeFormer face restoration
Upload a photo, choose a task and press **Run**. *Restore* repairs blurry, noisy or compressed faces;
*Colorize* gives black-and-white faces colour; *Inpaint* fills the parts of a face you paint white.
Based on [CodeFormer](https://github.com/sczhou/CodeFormer) (Zhou et al., NeurIPS 2022)."""
API_HELP = """Programmatic use: the endpoints `/restore`, `/colorize`, `/inpaint`, `/batch` and `/video` work with
[`gradio_client`](https://www.gradio.app/guides/getting-started-with-the-python-client); see "Use via API" below."""


def build_demo(pipeline: Pipeline) -> gr.Blocks:
    """The whole app around one shared pipeline. Builds no model: they load on the first request that needs them."""
    handlers = PhotoHandlers(pipeline)
    with gr.Blocks(title="CodeFormer", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(INTRO)
        weights_notice = gr.Markdown(visible=False, elem_id="weights-notice")
        with gr.Tab("Photo"):
            _photo_tab(handlers)
        build_batch_tab(pipeline)
        build_video_tab(pipeline)
        gr.Markdown(API_HELP)
        _api_endpoints(handlers)
        demo.load(
            lambda: _notice_update(pipeline), inputs=None, outputs=weights_notice, api_visibility="private", queue=False
        )
    return demo


def _notice_update(pipeline: Pipeline) -> dict:
    """Checked at each page load, so the banner goes away once the files have been fetched."""
    text = missing_weights_notice(pipeline)
    return gr.update(value=text, visible=bool(text))


def _photo_tab(handlers: PhotoHandlers) -> None:
    with gr.Row():
        with gr.Column():
            task = gr.Radio(TASK_CHOICES, value="restore", label="Task", elem_id="task")
            photo = gr.Image(type="filepath", image_mode=None, format="png", sources=["upload", "clipboard"],
                             label="Photo", elem_id="photo")
            editor = gr.ImageEditor(
                type="numpy", image_mode="RGBA", format="png", sources=["upload", "clipboard"], layers=False,
                transforms=(), brush=gr.Brush(colors=["#ffffff"], default_color="#ffffff", color_mode="fixed"),
                label="Photo: paint the holes with the white brush", visible=False, elem_id="editor",
            )
            fidelity = gr.Slider(0, 1, value=0.5, step=0.05, label="Fidelity (w)", elem_id="fidelity",
                                 info="0 favours quality, 1 stays closest to the input. Moving it after a run "
                                      "re-renders the result without detecting or encoding again.")
            with gr.Accordion("Options", open=True):
                options = option_widgets(None, aligned=True, upscale=2)
                upscale, aligned = options[:2]
            run = gr.Button("Run", variant="primary", elem_id="run")
        with gr.Column():
            before_after = gr.ImageSlider(type="filepath", format="png", label="Before / after", interactive=False,
                                          elem_id="before-after")
            report = gr.Textbox(label="Report", lines=4, interactive=False, elem_id="report")
            download = gr.File(label="Download the result (PNG)", interactive=False, elem_id="download")
            faces = gr.Gallery(label="Processed faces", format="png", columns=4, fit_columns=False,
                               object_fit="contain", interactive=False, elem_id="faces")
    photo_path = gr.State(None)  # the uploaded file, undecoded: see _follow_task_and_photo
    last_run = gr.State(None, time_to_live=3600)

    examples = bundled_examples()
    gr.Examples(
        examples=[[str(e.path), e.task, e.aligned, e.fidelity, e.upscale] for e in examples],
        example_labels=[e.label for e in examples],
        inputs=[photo, task, aligned, fidelity, upscale],
        label="Examples (made from scikit-image's public-domain astronaut photo)",
    )

    results = [before_after, faces, report, download, last_run]
    gr.on(
        [task.change, photo.change], _follow_task_and_photo, inputs=[task, photo],
        outputs=[photo, editor, fidelity, photo_path], preprocess=False, api_visibility="private", queue=False,
    )
    run.click(
        handlers.run_photo, inputs=[task, photo_path, editor, fidelity, *options], outputs=results,
        api_visibility="private", concurrency_id=PIPELINE_GROUP,
    )
    fidelity.release(
        handlers.change_fidelity, inputs=[fidelity, last_run], outputs=results,
        api_visibility="private", concurrency_id=PIPELINE_GROUP, show_progress_on=[before_after],
    )


def _follow_task_and_photo(task: str, photo: dict | None) -> tuple[dict, dict, dict, str | None]:
    """Inpaint swaps the photo for the painting editor (carrying the photo over); only restore has a fidelity.

    Runs unpreprocessed: gr.Image would open the upload with Pillow first, and a file that is not an image would
    fail inside Gradio with an internal message. The path goes to the handler, where `codeformer_core.images`
    reads it with its limits and one-line errors. Gradio has already checked that it lies in its upload folder.
    """
    path = photo["path"] if photo else None
    inpaint = task == "inpaint"
    editor = gr.update(visible=True, value=path) if inpaint and path else gr.update(visible=inpaint)
    return gr.update(visible=not inpaint), editor, gr.update(visible=task == "restore"), path


def _api_endpoints(handlers: PhotoHandlers) -> None:
    """/restore, /colorize and /inpaint for gradio_client. Their widgets are never shown: they only give the
    endpoints their parameter names and types. Images arrive as bytes so that `codeformer_core.images` is the only
    decoder that sees them."""
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
        result = gr.Image(type="filepath", format="png", label="result")
        report = gr.Textbox(label="report")
    settings = [upscale, aligned, background_enhance, face_upsample, detector, only_center_face]
    endpoints = [
        ("restore", handlers.restore, [image, fidelity, *settings]),
        ("colorize", handlers.colorize, [image, *settings]),
        ("inpaint", handlers.inpaint, [image, *settings, mask]),
    ]
    for name, handler, inputs in endpoints:
        gr.on([], handler, inputs=inputs, outputs=[result, report], api_name=name, concurrency_id=PIPELINE_GROUP)
