"""The Video tab: every frame's faces restored with the same options; the frame rate and the audio are kept.

Every frame runs through the network (seconds per face per frame on a CPU), so the public app refuses videos
longer than `Settings.max_video_seconds`.
"""

from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr

from codeformer_core.images import safe_stem
from codeformer_core.pipeline import ImageRestorer
from codeformer_core.video import restore_video

from .options_group import OptionValues, option_widgets, takes_options
from .outputs import RequestFiles
from .running import user_errors
from .widgets import PIPELINE_GROUP, task_widgets

NO_VIDEO = "Upload a video first (mp4, mov, avi, webm or mkv)."


class VideoResult(NamedTuple):
    """What the tab (and /video) shows, by name: the restored mp4's path and a summary."""

    video: Any
    status: Any


def build_video_tab(pipeline: ImageRestorer, files: RequestFiles, *, max_seconds: float | None) -> None:
    """The Video tab's widgets and its event (API name /video); call inside a gr.Blocks. max_seconds: the longest
    video accepted (None: any length)."""
    handler = VideoHandler(pipeline, files, max_seconds=max_seconds)
    limit = f"up to {handler.max_seconds:g} s long" if handler.max_seconds else "of any length"
    with gr.Tab("Video"):
        gr.Markdown(
            f"Videos {limit}. Every frame goes through the network, which takes seconds per face per frame on a"
            " CPU: try a short clip first. The result is an mp4 with the original frame rate and sound."
        )
        with gr.Row():
            with gr.Column():
                video = gr.Video(sources=["upload"], include_audio=True, label="Video", elem_id="video-input")
                task, fidelity = task_widgets("video")
                with gr.Accordion("Options", open=False):
                    options = option_widgets("video", aligned=False, upscale=1)
                run = gr.Button("Process the video", variant="primary", elem_id="video-run")
            with gr.Column():
                outputs = VideoResult(
                    video=gr.Video(format="mp4", label="Result", interactive=False, elem_id="video-result"),
                    status=gr.Textbox(label="Status", lines=3, interactive=False, elem_id="video-status"),
                )
    run.click(
        handler.run, inputs=[video, task, fidelity, *options], outputs=list(outputs),
        api_name="video", concurrency_id=PIPELINE_GROUP,
    )  # fmt: skip


class VideoHandler:
    """The function behind the Video tab and /video; one per app, sharing its Pipeline and RequestFiles."""

    def __init__(self, pipeline: ImageRestorer, files: RequestFiles, *, max_seconds: float | None) -> None:
        self.pipeline = pipeline
        self.max_seconds = max_seconds
        self.files = files

    @takes_options(without=("aligned",), last=("exact",))
    def run(
        self,
        video: str | None,
        task: str,
        fidelity: float,
        options: OptionValues,
        progress: gr.Progress = gr.Progress(),
    ) -> VideoResult:
        """The restored mp4 and a summary."""
        if not video:
            raise gr.Error(NO_VIDEO)
        restore_options = options.restore_options(task, fidelity)
        directory = self.files.new_request()
        destination = directory / f"{safe_stem(Path(video).name) or 'video'}_restored.mp4"

        def show(done: int, total: int | None, seconds_left: float | None) -> None:
            self.files.keep_alive(directory)
            left = f", about {format_duration(seconds_left)} left" if seconds_left is not None else ""
            progress((done, total), desc=f"Frame {done}{f' of {total}' if total else ''}{left}", unit="frames")

        progress(0.0, desc="Reading the video")
        with user_errors():
            restored = restore_video(
                Path(video), destination, self.pipeline, restore_options, progress=show, max_seconds=self.max_seconds
            )
        return VideoResult(video=str(restored.output), status=restored.summary())


def format_duration(seconds: float) -> str:
    """45 -> "45 s", 130 -> "2 min 10 s", 7300 -> "2 h 1 min"."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"
