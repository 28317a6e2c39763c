"""The CPU's convolution kernels are chosen by timing them on the machine, kept per machine, and can be forced."""

import json

import pytest
import torch

from codeformer_core.compat import nnpack_available
from codeformer_core.images import read_image
from codeformer_core.network import cpu_kernels
from codeformer_core.options import RestoreOptions
from codeformer_core.pipeline import Pipeline, RestoreRequest
from codeformer_core.weights import WeightStore

from .conftest import SAMPLES


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every probe is counted and answers as a CPU on which channels_last is fastest; decisions start afresh."""
    calls: list[int] = []

    def probe() -> dict[str, float]:
        calls.append(1)
        return {"winograd": 30.0, "channels-last": 20.0, "plain": 90.0}

    monkeypatch.setattr(cpu_kernels, "probe_timings", probe)
    monkeypatch.setattr(cpu_kernels, "_decisions", {})
    return calls


def test_auto_takes_the_fastest_probed_kernels_and_keeps_the_decision_for_this_machine(probes, tmp_path) -> None:
    cache = tmp_path / "cache" / "cpu-kernels.json"

    first = cpu_kernels.decide_cpu_kernels("auto", cache)

    assert (first.kernels, first.how) == ("channels-last", "probed on this machine")
    kept = json.loads(cache.read_text())[cpu_kernels.machine_key()]
    assert kept["kernels"] == "channels-last" and kept["timings_ms"]["plain"] == 90.0
    cpu_kernels._decisions.clear()  # a new process: the file answers, nothing is timed again
    again = cpu_kernels.decide_cpu_kernels("auto", cache)
    assert again.kernels == "channels-last" and again.how.startswith("probed on this machine on ")
    assert len(probes) == 1


def test_a_forced_choice_is_honoured_without_a_probe_and_another_machine_probes_anew(probes, tmp_path) -> None:
    cache = tmp_path / "cpu-kernels.json"
    cache.write_text(json.dumps({"Some other CPU | torch 1.0 | 64 threads": {"kernels": "winograd", "probed": "x"}}))

    forced = cpu_kernels.decide_cpu_kernels("plain", cache)
    assert forced.describe() == "plain kernels (set by CODEFORMER_CPU_KERNELS)" and probes == []

    assert cpu_kernels.decide_cpu_kernels("auto", cache).kernels == "channels-last" and len(probes) == 1
    assert len(json.loads(cache.read_text())) == 2  # the other machine's decision is kept


def test_an_unreadable_or_unwritable_cache_only_means_probing(probes, tmp_path) -> None:
    broken = tmp_path / "cpu-kernels.json"
    broken.write_text("{not json")
    assert cpu_kernels.decide_cpu_kernels("auto", broken).kernels == "channels-last"
    blocked = tmp_path / "a-file" / "cpu-kernels.json"
    (tmp_path / "a-file").write_text("")
    assert cpu_kernels.decide_cpu_kernels("auto", blocked).kernels == "channels-last"
    assert len(probes) == 2


def test_the_real_probe_times_each_available_choice() -> None:
    timings = cpu_kernels.probe_timings()

    expected = {"channels-last", "plain"} | ({"winograd"} if nnpack_available() else set())
    assert set(timings) == expected and all(ms > 0 for ms in timings.values())


def test_the_pipeline_runs_and_reports_the_decided_kernels(probes, stand_in_weights, tmp_path) -> None:
    weights = WeightStore(stand_in_weights("codeformer.pth"))
    pipeline = Pipeline(weights, "cpu", cpu_kernels_cache=tmp_path / "k.json", fast_precision="float32")
    face = read_image(SAMPLES / "aligned" / "0240.png")

    report = pipeline.run(RestoreRequest(face, RestoreOptions(aligned=True))).report

    net = pipeline.models.codeformer("restore")
    assert net.memory_format == torch.channels_last
    assert report.cpu_kernels == "channels-last kernels (probed on this machine)"
    assert report.precision == "exact float32"
    assert report.to_dict()["cpu_kernels"] == report.cpu_kernels
