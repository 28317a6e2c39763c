"""The banner that says which pretrained files are still missing, and the two ways to provide them."""

from codeformer_core.layouts import TASKS
from codeformer_core.options import RestoreOptions
from codeformer_core.pipeline import ImageRestorer
from codeformer_core.weights.registry import weight_file

LIKELY_REQUESTS = (*(RestoreOptions(task=task) for task in TASKS), RestoreOptions(background="realesrgan"))
"""The three tasks with the page's default options, plus the background upsampler: what a visitor will likely use."""


def missing_weights_notice(pipeline: ImageRestorer) -> str:
    """Markdown naming the files those options would still have to download, or "" when every one is present.
    Looks only at the disk (weights directory and Hugging Face cache), never at the network."""
    missing = list(dict.fromkeys(name for options in LIKELY_REQUESTS for name in pipeline.missing_weights(options)))
    if not missing:
        return ""
    store = pipeline.weights
    lines = []
    for name in missing:
        entry = weight_file(name, store.registry)
        lines.append(f"- `{name}`: {entry.purpose} ([official copy]({entry.url}))")
    return (
        "**Some pretrained files are not on this machine yet:**\n\n" + "\n".join(lines) + "\n\n"
        f"Each is downloaded from the Hugging Face Hub ({store.hub_settings.endpoint}) the first time a task needs"
        " it; the progress bar shows the download. If this machine cannot reach the Hub, either put the official files"
        f" into `{store.weights_dir}`, or set `HF_ENDPOINT` to a Hub mirror that has them and restart the app."
    )
