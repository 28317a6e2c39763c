"""Many users at once: concurrent gradio_client sessions against the app on 127.0.0.1.

Requests are photos without faces through the dlib detector (real work, no weights needed), so the queue, not the
network's 8 s per face, is what is exercised. Bounded: 8 clients, one request each, a time limit per request.
"""

import gc
import threading
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import psutil
import pytest
from gradio_client import Client, handle_file

from app import serve
from codeformer_core.pipeline import Pipeline
from codeformer_core.settings import HubSettings
from codeformer_core.weights import WeightStore
from demo import build_demo

from .app_server import free_port

CLIENTS = 8
MAX_QUEUE = 2
REQUEST_SECONDS = 120


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    work = tmp_path_factory.mktemp("load")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        demo = build_demo(Pipeline(WeightStore(work / "weights", hub=HubSettings(offline=True)), device="cpu"))
        url = serve(demo, host="127.0.0.1", port=free_port(), max_queue=MAX_QUEUE, block=False)
        try:
            yield url
        finally:
            demo.close()


@pytest.fixture(scope="module")
def faceless_photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "noise.png"
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    cv2.imwrite(str(path), cv2.GaussianBlur(noise, (9, 9), 3))
    return path


def restore_once(url: str, photo, start: threading.Barrier) -> str:
    client = Client(url, verbose=False)
    start.wait(timeout=60)
    job = client.submit(handle_file(photo), upscale=1, detector="dlib", api_name="/restore")
    try:
        _, report = job.result(timeout=REQUEST_SECONDS)
    except Exception as error:  # noqa: BLE001 - the outcome under test is the error's text
        return f"error: {error}"
    return report


def test_eight_concurrent_sessions_are_answered_or_told_the_queue_is_full(app_url, faceless_photo):
    process = psutil.Process()
    assert "No face was found" in restore_once(app_url, faceless_photo, threading.Barrier(1))
    gc.collect()
    baseline = process.memory_info().rss

    start = threading.Barrier(CLIENTS)
    with ThreadPoolExecutor(CLIENTS) as pool:
        outcomes = list(pool.map(lambda _: restore_once(app_url, faceless_photo, start), range(CLIENTS)))

    answered = [o for o in outcomes if "No face was found" in o]
    refused = [o for o in outcomes if o.startswith("error:") and "queue is full" in o.lower()]
    assert len(answered) + len(refused) == CLIENTS, outcomes
    assert answered, "at least the requests the queue took must be answered"
    assert refused, f"{CLIENTS} simultaneous requests with a queue of {MAX_QUEUE} must fill it"

    # The server is still up and serving.
    assert "No face was found" in restore_once(app_url, faceless_photo, threading.Barrier(1))
    gc.collect()
    assert process.memory_info().rss - baseline < 300 * 2**20
