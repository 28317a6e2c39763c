"""The page: the tabs side by side, the missing-weights banner and the API endpoints. Each tab and the endpoints
live in a module of their own; what their events share is in `running.py`.

Every model-running event shares one concurrency group, so the queue's limit bounds them all together.
"""

import gradio as gr

from codeformer_core.hardware import HardwareProfile
from codeformer_core.pipeline import ImageRestorer
from codeformer_core.settings import Settings

from .api import build_api_endpoints
from .batch_tab import build_batch_tab
from .notices import missing_weights_notice
from .outputs import RequestFiles
from .photo_tab import build_photo_tab
from .video_tab import build_video_tab

DELETE_CACHE = (1800, 3600)
"""Every 30 minutes, Gradio deletes the files it cached for the page (uploads, results) once they are 1 hour old."""
INTRO = """# CodeFormer face restoration
Upload a photo, choose a task and press **Run**. *Restore* repairs blurry, noisy or compressed faces;
*Colorize* gives black-and-white faces colour; *Inpaint* fills the parts of a face you paint white.
Based on [CodeFormer](https://github.com/sczhou/CodeFormer) (Zhou et al., NeurIPS 2022)."""
API_HELP = """Programmatic use: the endpoints `/restore`, `/colorize`, `/inpaint`, `/batch` and `/video` work with
[`gradio_client`](https://www.gradio.app/guides/getting-started-with-the-python-client); see "Use via API" below."""


def build_demo(
    pipeline: ImageRestorer, settings: Settings | None = None, profile: HardwareProfile | None = None
) -> gr.Blocks:
    """The whole app around one shared pipeline (or a wrapper that runs it, e.g. on ZeroGPU). Builds no model.
    settings: the process's (for the video length and batch size limits); profile: what the hardware can do, shown
    in one line. The defaults when not given."""
    settings = settings if settings is not None else Settings()
    with gr.Blocks(title="CodeFormer", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(INTRO)
        if profile is not None:
            gr.Markdown(profile.summary(), elem_id="hardware")
        weights_notice = gr.Markdown(visible=False, elem_id="weights-notice")
        files = RequestFiles()
        build_photo_tab(pipeline, files)
        build_batch_tab(pipeline, files, max_photos=settings.max_batch_photos)
        build_video_tab(pipeline, files, max_seconds=settings.max_video_seconds)
        gr.Markdown(API_HELP)
        build_api_endpoints(pipeline, files)
        demo.load(
            lambda: _notice_update(pipeline), inputs=None, outputs=weights_notice, api_visibility="private", queue=False
        )
    return demo


def _notice_update(pipeline: ImageRestorer) -> dict:
    """Checked at each page load, so the banner goes away once the files have been fetched."""
    text = missing_weights_notice(pipeline)
    return gr.update(value=text, visible=bool(text))
