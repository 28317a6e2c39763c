"""What the hardware can do is decided once at start-up, applied to every request, and said in the page."""

from types import SimpleNamespace

import gradio as gr
import torch

import app
from codeformer_core.hardware import HardwareProfile
from codeformer_core.images import read_image
from codeformer_core.network import CodeFormer, precision
from codeformer_core.options import RestoreOptions
from codeformer_core.pipeline import Pipeline, RestoreRequest
from codeformer_core.settings import HubSettings, Settings
from codeformer_core.weights import WeightStore
from demo import build_demo

from .conftest import SAMPLES


def test_a_cpu_runs_one_request_at_a_time_and_says_its_mode_and_kernels(monkeypatch, tmp_path):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    settings = Settings(cpu_kernels="winograd", cpu_kernels_cache=tmp_path / "kernels.json")

    profile = HardwareProfile.detect(torch.device("cpu"), settings)

    assert (profile.label, profile.fast_precision, profile.concurrency) == ("CPU (2 cores)", "float32", 1)
    assert profile.summary() == ("Running on CPU (2 cores), exact float32, winograd kernels (set by "
                                 "CODEFORMER_CPU_KERNELS): about 10 s per face.")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert HardwareProfile.detect(torch.device("cpu"), settings).summary().startswith(
        "Running on CPU (2 cores), fast mode (codes in float32, decoder in bf16), winograd kernels")


def test_a_gpu_decodes_in_bf16_where_native_and_runs_as_many_requests_as_its_memory_holds(monkeypatch):
    card = SimpleNamespace(name="NVIDIA A10G", total_memory=24 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: card)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)

    profile = HardwareProfile.detect(torch.device("cuda"), Settings())

    assert (profile.label, profile.fast_precision, profile.concurrency) == ("NVIDIA A10G (24 GB)", "bf16", 4)
    assert profile.summary() == ("Running on NVIDIA A10G (24 GB), fast mode (codes in float32, decoder in bf16): "
                                 "well under a second per face.")
    small = SimpleNamespace(name="Tesla T4", total_memory=15 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: small)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    t4 = HardwareProfile.detect(torch.device("cuda"), Settings())
    assert (t4.concurrency, t4.fast_precision) == (3, "float32")  # no native bf16: exact float32
    assert HardwareProfile.detect(torch.device("cuda"), Settings(fast_precision="fp16")).fast_precision == "fp16"


def test_zerogpu_is_named_without_touching_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: 1 / 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: 1 / 0)

    profile = HardwareProfile.detect(torch.device("cuda"), Settings(zero_gpu=True))

    assert profile.fast_precision == "bf16" and profile.concurrency == 2 and "ZeroGPU" in profile.summary()


def test_fast_mode_decodes_at_the_pipelines_precision_and_exact_runs_float32(stand_in_weights, monkeypatch):
    weights = WeightStore(stand_in_weights("codeformer.pth"), hub=HubSettings(offline=True))
    seen = []
    original = CodeFormer.decode

    def decode(net, encoded, w, precision="float32"):
        seen.append(precision)
        return original(net, encoded, w, "float32")  # bf16 may be emulated here: only what was asked matters

    monkeypatch.setattr(CodeFormer, "decode", decode)
    face = read_image(SAMPLES / "aligned" / "0240.png")
    pipeline = Pipeline(weights, "cpu", fast_precision="bf16")

    pipeline.run(RestoreRequest(face, RestoreOptions(aligned=True)))
    pipeline.run(RestoreRequest(face, RestoreOptions(aligned=True, exact=True)))

    assert seen == ["bf16", "float32"]


def test_the_page_says_what_it_runs_on(tmp_path):
    pipeline = Pipeline(WeightStore(tmp_path / "weights", hub=HubSettings(offline=True)), device="cpu")
    profile = HardwareProfile("CPU (2 cores)", "bf16", 1, 10.0, "channels-last kernels (probed on this machine)")

    page = build_demo(pipeline, Settings(), profile)

    lines = [block.value for block in page.blocks.values() if isinstance(block, gr.Markdown)]
    assert ("Running on CPU (2 cores), fast mode (codes in float32, decoder in bf16), channels-last kernels (probed "
            "on this machine): about 10 s per face.") in lines


def test_a_cpu_without_native_bf16_runs_exact_float32_when_not_asked_to(stand_in_weights, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    weights = WeightStore(stand_in_weights("codeformer.pth"), hub=HubSettings(offline=True))
    seen = []
    original = CodeFormer.decode
    monkeypatch.setattr(CodeFormer, "decode", lambda net, encoded, w, precision="float32":
                        seen.append(precision) or original(net, encoded, w, precision))
    pipeline = Pipeline(weights, "cpu")

    face = read_image(SAMPLES / "aligned" / "0240.png")
    report = pipeline.run(RestoreRequest(face, RestoreOptions(aligned=True))).report

    assert pipeline.fast_precision == "float32" and seen == ["float32"] and report.precision == "exact float32"


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
