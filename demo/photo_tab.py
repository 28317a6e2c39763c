"""The Photo tab: one photo, a task, the fidelity slider, and the result beside the input.

Moving the slider after a run re-renders the last photo from what the pipeline kept of it, so usually only the
decoder and the paste-back run again; the face-by-face panel (`face_panel.py`) re-renders the same way, face by face.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import gradio as gr

from codeformer_core.options import RestoreOptions
from codeformer_core.pipeline import SWEEP_FIDELITIES, ImageRestorer, RestoreRequest

from .examples import bundled_examples
from .face_panel import (
    build_face_panel,
    face_captions,
    face_fidelity_update,
    panel_updates,
    sweep_gallery,
    with_own_fidelity,
)
from .options_group import OptionValues, option_widgets, takes_options
from .outputs import RequestFiles
from .running import NO_PHOTO, editor_image_and_mask, progress_callback, read_upload, run_and_write, user_errors
from .widgets import PIPELINE_GROUP

TASK_CHOICES = [("Restore", "restore"), ("Colorize", "colorize"), ("Inpaint", "inpaint")]
EXPIRED = "The last photo is no longer kept: press Run again."
"""The face panel appears only after a run, so its controls without a last run mean the session's state expired."""


@dataclass(frozen=True)
class LastRun:
    """What the page ran last, kept per browser session so a fidelity or face change can re-render it."""

    request: RestoreRequest
    face_count: int

    @property
    def options(self) -> RestoreOptions:
        return self.request.options


class PhotoResult(NamedTuple):
    """What a run shows, by name. The tab builds one of these holding its output widgets, and wires the events'
    outputs from it, so a handler's values and the widgets they go to cannot fall out of order."""

    before_after: Any  # (input preview, result preview) paths for the slider
    faces: Any  # gallery of (face PNG, caption)
    report: Any  # the report's summary
    download: Any  # the full-size PNG
    last_run: Any  # LastRun, for the slider's re-render
    panel: Any  # the face-by-face panel and the fields below: see face_panel.FacePanel
    faces_to_restore: Any
    face_to_adjust: Any
    fidelity_controls: Any
    face_fidelity: Any
    sweep: Any


def build_photo_tab(pipeline: ImageRestorer, files: RequestFiles) -> None:
    """The Photo tab's widgets and events; call inside a gr.Blocks."""
    page = PhotoPage(pipeline, files)
    with gr.Tab("Photo"):
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
                                          "re-renders the result, usually without detecting or encoding again.")
                with gr.Accordion("Options", open=True):
                    options = option_widgets(None, aligned=True, upscale=2)
                    upscale, aligned = options[:2]
                run = gr.Button("Run", variant="primary", elem_id="run")
            with gr.Column():
                shown = dict(
                    before_after=gr.ImageSlider(type="filepath", format="png", label="Before / after",
                                                interactive=False, elem_id="before-after"),
                    report=gr.Textbox(label="Report", lines=4, interactive=False, elem_id="report"),
                    download=gr.File(label="Download the result (PNG)", interactive=False, elem_id="download"),
                    faces=gr.Gallery(label="Processed faces", format="png", columns=4, fit_columns=False,
                                     height=200, object_fit="contain", interactive=False, elem_id="faces"),
                    last_run=gr.State(None, time_to_live=3600),
                )
                face_panel, compare = build_face_panel()
                outputs = PhotoResult(**shown, **face_panel._asdict())
        photo_path = gr.State(None)  # the uploaded file, undecoded: see _follow_task_and_photo

        examples = bundled_examples()
        gr.Examples(
            examples=[[str(e.path), e.task, e.aligned, e.fidelity, e.upscale] for e in examples],
            example_labels=[e.label for e in examples],
            inputs=[photo, task, aligned, fidelity, upscale],
            label="Examples (made from scikit-image's public-domain astronaut photo)",
        )

    gr.on(
        [task.change, photo.change], _follow_task_and_photo, inputs=[task, photo],
        outputs=[photo, editor, fidelity, photo_path], preprocess=False, api_visibility="private", queue=False,
    )
    run.click(
        page.run_photo, inputs=[task, photo_path, editor, fidelity, *options], outputs=list(outputs),
        api_visibility="private", concurrency_id=PIPELINE_GROUP,
    )
    fidelity.release(
        page.change_fidelity, inputs=[fidelity, outputs.face_to_adjust, outputs.last_run], outputs=list(outputs),
        api_visibility="private", concurrency_id=PIPELINE_GROUP, show_progress_on=[outputs.before_after],
    )
    _wire_face_panel(page, outputs, compare)


def _wire_face_panel(page: "PhotoPage", outputs: PhotoResult, compare: gr.Button) -> None:
    """Re-renders run in the pipeline's concurrency group; picking a face only updates the panel."""
    rerender = dict(
        outputs=list(outputs), api_visibility="private", concurrency_id=PIPELINE_GROUP,
        show_progress_on=[outputs.before_after],
    )  # fmt: skip
    chosen, last_run = outputs.face_to_adjust, outputs.last_run
    outputs.faces_to_restore.input(page.choose_faces, inputs=[outputs.faces_to_restore, chosen, last_run], **rerender)
    outputs.face_fidelity.release(
        page.change_face_fidelity, inputs=[outputs.face_fidelity, chosen, last_run], **rerender
    )  # fmt: skip
    outputs.sweep.select(page.pick_swept, inputs=[chosen, last_run], **rerender)
    picked = [outputs.face_to_adjust, outputs.face_fidelity, outputs.sweep]
    outputs.faces.select(page.pick_face, inputs=[last_run], outputs=picked, api_visibility="private", queue=False)
    outputs.face_to_adjust.input(page.show_face, inputs=[chosen, last_run], outputs=picked[1:],
                                 api_visibility="private", queue=False)  # fmt: skip
    compare.click(page.compare, inputs=[chosen, last_run], outputs=[outputs.sweep], api_visibility="private",
                  concurrency_id=PIPELINE_GROUP)  # fmt: skip


class PhotoPage:
    """The functions behind the Photo tab; one per app, sharing its Pipeline and RequestFiles."""

    def __init__(self, pipeline: ImageRestorer, files: RequestFiles) -> None:
        self.pipeline = pipeline
        self.files = files

    @takes_options(last=("exact",))
    def run_photo(
        self,
        task: str,
        photo: str | None,
        editor: dict[str, Any] | None,
        fidelity: float,
        options: OptionValues,
        progress: gr.Progress = gr.Progress(),
    ) -> PhotoResult:
        """The Run button: the photo (or, for inpaint, the editor's photo and strokes) with the chosen options."""
        restore_options = options.restore_options(task, fidelity)
        if task == "inpaint" and editor is not None and editor.get("background") is not None:
            image, mask = editor_image_and_mask(editor)
        elif photo is not None:
            image, mask = read_upload(photo), None
        else:
            raise gr.Error(NO_PHOTO)
        return self._run(RestoreRequest(image, restore_options, mask), progress)

    def change_fidelity(
        self, fidelity: float, chosen: int | None, last_run: LastRun | None, progress: gr.Progress = gr.Progress()
    ) -> PhotoResult:
        """The fidelity slider moved: re-render the last restore at the new w (faces with a w of their own keep
        it). The pipeline usually keeps that image's detections and encoding, so only the decoder and the paste-back
        run again (the report says so)."""
        if last_run is None or last_run.options.task != "restore":
            return _nothing_to_do()
        return self._rerender(last_run, chosen, progress, fidelity=fidelity)

    def choose_faces(
        self, restored: list[int], chosen: int | None, last_run: LastRun | None, progress: gr.Progress = gr.Progress()
    ) -> PhotoResult:
        """A face ticked or unticked: the faces are all decoded already, so only the paste-back runs again."""
        last_run = _kept(last_run)
        skipped = tuple(index for index in range(last_run.face_count) if index not in restored)
        return self._rerender(last_run, chosen, progress, skip_faces=skipped)

    def change_face_fidelity(
        self, w: float, chosen: int | None, last_run: LastRun | None, progress: gr.Progress = gr.Progress()
    ) -> PhotoResult:
        """The chosen face's own slider moved (or a w picked in the comparison): that face alone is decoded again,
        and a face left out is put back, since a w was asked for it."""
        last_run = _kept(last_run)
        if chosen is None:
            return _nothing_to_do()
        face, options = int(chosen), last_run.options
        skipped = tuple(index for index in options.skip_faces if index != face)
        own = with_own_fidelity(options, face, w)
        return self._rerender(last_run, face, progress, face_fidelities=own, skip_faces=skipped)

    def pick_swept(
        self, chosen: int | None, last_run: LastRun | None, picked: gr.SelectData, progress: gr.Progress = gr.Progress()
    ) -> PhotoResult:
        """A face in the comparison clicked: the chosen face takes that w (decoded already, by the comparison)."""
        return self.change_face_fidelity(SWEEP_FIDELITIES[picked.index], chosen, last_run, progress)

    def pick_face(self, last_run: LastRun | None, picked: gr.SelectData) -> tuple[Any, Any, Any]:
        """A face clicked in the gallery: it becomes the face to adjust (its radio, its slider; no comparison yet)."""
        return picked.index, *self.show_face(picked.index, _kept(last_run))

    def show_face(self, chosen: int | None, last_run: LastRun | None) -> tuple[Any, Any]:
        """The slider of the face to adjust, and an empty comparison (the one shown was another face's)."""
        last_run = _kept(last_run)
        if chosen is None:
            return gr.skip(), gr.skip()
        return face_fidelity_update(last_run.options, int(chosen)), None

    def compare(self, chosen: int | None, last_run: LastRun | None, progress: gr.Progress = gr.Progress()) -> Any:
        """The chosen face at each w of SWEEP_FIDELITIES, side by side; the photo is encoded already."""
        last_run = _kept(last_run)
        if chosen is None:
            return gr.skip()
        with user_errors():
            sweep = self.pipeline.fidelity_sweep(last_run.request, int(chosen), progress=progress_callback(progress))
            return sweep_gallery(sweep, self.files.new_request())

    def _rerender(
        self, last_run: LastRun, chosen: int | None, progress: gr.Progress, **changes: Any
    ) -> PhotoResult:
        """The last photo again with `changes` to its options; nothing when they change nothing."""
        with user_errors():
            options = dataclasses.replace(last_run.options, **changes)
        if options == last_run.options:
            return _nothing_to_do()
        request = dataclasses.replace(last_run.request, options=options)
        return self._run(request, progress, chosen=int(chosen or 0), new_photo=False)

    def _run(
        self, request: RestoreRequest, progress: gr.Progress, *, chosen: int = 0, new_photo: bool = True
    ) -> PhotoResult:
        result, files = run_and_write(self.pipeline, self.files, request, progress)
        for notice in result.report.notices:
            gr.Warning(notice)
        return PhotoResult(
            before_after=(str(files.before), str(files.after)),
            faces=list(zip(map(str, files.faces), face_captions(result.report), strict=True)),
            report=result.report.summary(),
            download=str(files.download),
            last_run=LastRun(request, len(result.report.faces)),
            **panel_updates(request.options, result.report, chosen),
            sweep=None if new_photo else gr.skip(),
        )


def _kept(last_run: LastRun | None) -> LastRun:
    """The last run, for a face-panel control; None there means it expired, which the visitor must be told."""
    if last_run is None:
        raise gr.Error(EXPIRED, print_exception=False)
    return last_run


def _nothing_to_do() -> PhotoResult:
    return PhotoResult(*(gr.skip(),) * len(PhotoResult._fields))


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
