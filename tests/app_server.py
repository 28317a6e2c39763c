"""The app served on 127.0.0.1 the way `app.py` serves it, for the API and browser tests.

CodeFormer weights are golden-filled checkpoints in the published format (tests/golden.py), fetched on first use
from the fake Hugging Face Hub (tests/fake_hub.py), so the tests go through the real download path. Most photos
are aligned faces from the shared samples, which need no detector or parser: only the CodeFormer file; a whole
photo needs the parser as well (random stand-in weights) and is found with dlib, which needs no file.

Tests of the queue and of who may use the app serve the page around `GatedRestorer` instead, a stand-in for the
pipeline whose jobs last as long as the test wants.
"""

import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import gradio as gr
import pytest

from app import serve
from codeformer_core.layouts import Task
from codeformer_core.options import RestoreOptions
from codeformer_core.pipeline import Pipeline, Progress, RestoreRequest
from codeformer_core.report import Report, RestoreResult
from codeformer_core.settings import HubSettings
from codeformer_core.weights import CODEFORMER_FILES, REGISTRY, WeightStore
from demo import build_demo

from .fake_hub import FakeHub, use_hub

GATE_SECONDS = 120
"""The longest a stand-in job waits for its gate: a test that forgets to open it fails instead of hanging."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_app(
    checkpoint: Callable[[Task], Path],
    tasks: Sequence[Task],
    work_dir: Path,
    other_files: Mapping[str, Path] | None = None,
) -> Iterator[str]:
    """Serve the app on a free 127.0.0.1 port with the CodeFormer files of `tasks` (and `other_files`, official
    name -> stand-in file) on a fake Hub; yields its URL.

    The weights directory starts empty, so the page shows the missing-files banner and the first run of each
    task downloads its file. The official registry's sizes and digests are dropped: they describe the published
    files, not the golden ones.
    """
    hub = FakeHub.start()
    for task in tasks:
        hub.files[f"weights/CodeFormer/{CODEFORMER_FILES[task]}"] = checkpoint(task)
    for name, path in (other_files or {}).items():
        hub.files[f"weights/facelib/{name}"] = path
    registry = {name: replace(entry, size=None, sha256=None) for name, entry in REGISTRY.items()}
    with pytest.MonkeyPatch.context() as env:
        use_hub(env, hub, work_dir / "hf-home")
        env.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        store = WeightStore(
            work_dir / "weights", hub=HubSettings.from_env(), registry=registry, allow_url_fallback=False
        )
        try:
            with served(build_demo(Pipeline(store, device="cpu"))) as url:
                yield url
        finally:
            hub.stop()


@contextmanager
def served(demo: gr.Blocks, **serving: Any) -> Iterator[str]:
    """`demo` served by `app.serve` on a free 127.0.0.1 port (serving: its other options); yields its URL."""
    url = serve(demo, host="127.0.0.1", port=free_port(), block=False, **serving)
    try:
        yield url
    finally:
        demo.close()


class GatedRestorer:
    """Stands in for the pipeline: each request's answer is its own photo, given once the test opens `gate`.

    started: released as each job starts running; fidelities: the w of each job, in the order they ran (a test
    tells its jobs apart by their w).
    """

    def __init__(self, weights: WeightStore) -> None:
        self.weights = weights
        self.gate = threading.Event()
        self.started = threading.Semaphore(0)
        self.fidelities: list[float] = []

    def run(self, request: RestoreRequest, *, progress: Progress | None = None) -> RestoreResult:
        self.fidelities.append(request.options.fidelity)
        self.started.release()
        if not self.gate.wait(GATE_SECONDS):
            raise TimeoutError("the test never opened the gate")
        height, width = request.image.bgr.shape[:2]
        report = Report(request.options.task, request.options.fidelity, (width, height), (width, height))
        return RestoreResult(request.image.bgr, [], report)

    def missing_weights(self, options: RestoreOptions) -> list[str]:
        return []
