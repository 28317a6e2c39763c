"""What the hardware can do is decided once at start-up, applied to every request, and said in the page."""

from types import SimpleNamespace

import gradio as gr
import torch

import app
from codeformer_core.hardware import HardwareProfile
from codeformer_core.images import read_image
from codeformer_core.options import RestoreOptions
from codeformer_core.pipeline import Pipeline
from codeformer_core.settings import HubSettings, Settings
from codeformer_core.weights import WeightStore
from demo import build_demo

from .conftest import SAMPLES


def test_a_cpu_runs_one_request_at_a_time_in_float32(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)

    profile = HardwareProfile.detect(torch.device("cpu"), Settings())

    assert (profile.label, profile.fast, profile.concurrency) == ("CPU (2 cores)", False, 1)
    assert profile.summary() == "Running on CPU (2 cores), float32: about 10 s per face."


def test_a_gpu_runs_fp16_and_as_many_requests_as_its_memory_holds(monkeypatch):
    card = SimpleNamespace(name="NVIDIA A10G", total_memory=24 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: card)

    profile = HardwareProfile.detect(torch.device("cuda"), Settings())

    assert (profile.label, profile.fast, profile.concurrency) == ("NVIDIA A10G (24 GB)", True, 4)
    assert profile.summary() == "Running on NVIDIA A10G (24 GB), fp16: well under a second per face."
    small = SimpleNamespace(name="Tesla T4", total_memory=15 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: small)
    assert HardwareProfile.detect(torch.device("cuda"), Settings()).concurrency == 3


def test_zerogpu_is_named_without_touching_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: 1 / 0)

    profile = HardwareProfile.detect(torch.device("cuda"), Settings(zero_gpu=True))

    assert profile.fast and profile.concurrency == 2 and "ZeroGPU" in profile.summary()


def test_a_fast_pipeline_runs_every_request_in_reduced_precision(stand_in_weights, monkeypatch):
    weights = WeightStore(stand_in_weights("codeformer.pth"), hub=HubSettings(offline=True))
    # On this CPU reduced precision may be float32 or bf16: force a visible choice and record what runs.
    seen = []
    record = lambda device, fast: seen.append(fast) or "float32"  # noqa: E731
    monkeypatch.setattr("codeformer_core.network.batches.precision_for", record)
    face = read_image(SAMPLES / "aligned" / "0240.png")

    Pipeline(weights, "cpu", fast=True).run(face, RestoreOptions(aligned=True))

    assert seen and all(seen)


def test_the_page_says_what_it_runs_on(tmp_path):
    pipeline = Pipeline(WeightStore(tmp_path / "weights", hub=HubSettings(offline=True)), device="cpu")
    profile = HardwareProfile("CPU (2 cores)", False, 1, 10.0)

    page = build_demo(pipeline, Settings(), profile)

    lines = [block.value for block in page.blocks.values() if isinstance(block, gr.Markdown)]
    assert "Running on CPU (2 cores), float32: about 10 s per face." in lines


def test_the_app_takes_its_queue_concurrency_from_the_hardware(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    served = {}
    monkeypatch.setattr(app, "serve", lambda demo, **kwargs: served.update(kwargs))

    assert app.main(["--device", "cpu"]) == 0

    assert served["concurrency"] == 1 and served["host"] == "127.0.0.1"
    assert app.main(["--device", "cpu", "--concurrency", "3"]) == 0 and served["concurrency"] == 3


def test_the_apps_backend_option_reaches_the_pipeline_it_serves(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("CODEFORMER_BACKEND", raising=False)
    built = SimpleNamespace()
    monkeypatch.setattr(app, "build_demo", lambda restorer, settings, profile: setattr(built, "restorer", restorer))
    monkeypatch.setattr(app, "serve", lambda demo, **kwargs: None)

    assert app.main(["--device", "cpu", "--backend", "onnxruntime"]) == 0

    assert isinstance(built.restorer, Pipeline) and built.restorer.models.backend == "onnxruntime"
    assert app.main(["--device", "cpu"]) == 0 and built.restorer.models.backend == "torch"
