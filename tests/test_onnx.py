"""ONNX export with w as an input, checked by ONNX Runtime against the golden vectors, and the onnxruntime backend.

Exports are the slow part (~15-30 s and ~2 GB each here): one per task. The restore network is exported once by
the backend (its encoder/decoder pair, kept in the weights directory), and the export command then reuses that
pair; colorize and inpaint go through the export command from their checkpoints.
"""

import dataclasses
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from codeformer_core import cli
from codeformer_core.errors import InvalidOptionError
from codeformer_core.export.graphs import DecoderGraph
from codeformer_core.export.runtime import OnnxRuntimeCodeFormer, providers_for
from codeformer_core.images import read_image
from codeformer_core.layouts import TASKS
from codeformer_core.network import build_network
from codeformer_core.options import RestoreOptions
from codeformer_core.pipeline import Pipeline, RestoreRequest
from codeformer_core.weights import WeightStore
from codeformer_core.weights.registry import CODEFORMER_FILES
from tests.support.golden import golden_input, golden_state_dict, reference_arrays

from .conftest import SAMPLES

FEATURE_TOLERANCE = 1e-4  # the torch network's bounds (tests/test_network_golden.py, ../shared/golden/README.md)
OUTPUT_TOLERANCE = 1e-3  # times max |reference|
FIDELITIES = {"restore": (0.0, 0.5, 1.0), "colorize": (0.0,), "inpaint": (1.0,)}
BRANCHES = {"If", "Loop", "Scan"}


def assert_golden_output(task, w, output):
    expected = reference_arrays(task)[f"out_w{w:g}"]
    assert output.shape == expected.shape and output.dtype == np.float32
    error = np.abs(output - expected).max()
    assert error <= OUTPUT_TOLERANCE * np.abs(expected).max(), f"{task}, w={w}: max error {error}"


def assert_golden_logits(task, logits):
    reference = reference_arrays(task)
    np.testing.assert_array_equal(logits.argmax(-1)[0], reference["idx"])
    assert np.abs(logits - reference["logits"]).max() <= FEATURE_TOLERANCE


@pytest.fixture(scope="module")
def restore_weights(stand_in_weights):
    return stand_in_weights(CODEFORMER_FILES["restore"])


@pytest.fixture(scope="module")
def onnx_pipeline(restore_weights):
    """A pipeline on the onnxruntime backend whose restore network is loaded (exported on first use)."""
    pipeline = Pipeline(WeightStore(restore_weights), device="cpu", backend="onnxruntime")
    pipeline.models.codeformer("restore")
    return pipeline


@pytest.fixture(scope="module")
def weights_for(request, stand_in_weights):
    def directory(task):
        if task == "restore":
            request.getfixturevalue("onnx_pipeline")  # the backend's graphs, for the export to reuse
            return request.getfixturevalue("restore_weights")
        return stand_in_weights(CODEFORMER_FILES[task])

    return directory


def test_the_backend_encodes_once_and_decodes_three_fidelities_within_the_golden_bounds(onnx_pipeline):
    net = onnx_pipeline.models.codeformer("restore")
    assert net.providers == ["CPUExecutionProvider"]

    encoded = net.encode(golden_input("restore"))

    assert_golden_logits("restore", encoded.logits.numpy())
    assert np.abs(encoded.lq_feat.numpy() - reference_arrays("restore")["lq_feat"]).max() <= FEATURE_TOLERANCE
    for w in FIDELITIES["restore"]:
        assert_golden_output("restore", w, net.decode(encoded, w).numpy())


@pytest.mark.parametrize("task", TASKS)
def test_the_exported_file_takes_w_as_an_input_and_meets_the_golden_vectors(task, weights_for, tmp_path, capsys):
    weights = weights_for(task)
    path = tmp_path / f"codeformer-{task}.onnx"

    code = cli.main(["export", "onnx", "--task", task, "-o", str(path), "--weights-dir", str(weights)])

    summary = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(summary) == 1
    assert summary[0].startswith(f"{path}: ") and "opset 17" in summary[0]
    assert "input float32 [faces, 3, 512, 512], weight float32 [1]" in summary[0]
    model = onnx.load(path)
    assert not BRANCHES & {node.op_type for node in model.graph.node}
    assert "S-Lab" in {prop.key: prop.value for prop in model.metadata_props}["license"]
    del model
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [value.name for value in session.get_inputs()] == ["input", "weight"]
    assert [value.name for value in session.get_outputs()] == ["output", "logits"]
    for w in FIDELITIES[task]:
        output, logits = session.run(None, {"input": golden_input(task).numpy(), "weight": np.array([w], np.float32)})
        assert_golden_output(task, w, output)
        assert_golden_logits(task, logits)


def test_a_float64_weight_input_casts_to_the_same_graph(restore_weights, onnx_pipeline, tmp_path, capsys):
    path = tmp_path / "facefusion.onnx"

    code = cli.main(["export", "onnx", "-o", str(path), "--weight-type", "float64", "--weights-dir",
                     str(restore_weights)])

    assert code == 0 and "weight float64 [1]" in capsys.readouterr().out
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    output, _ = session.run(None, {"input": golden_input("restore").numpy(), "weight": np.array([0.5])})
    assert_golden_output("restore", 0.5, output)


def test_a_tensor_w_of_zero_gives_exactly_the_output_without_the_cft_blocks():
    net = build_network("restore")
    net.load_state_dict(golden_state_dict("restore"))
    encoded = net.encode(golden_input("restore"))
    skips = [encoded.skips[res] for res in net.config.cft_resolutions]

    with torch.inference_mode():
        through_cft = DecoderGraph(net)(encoded.quant_feat, *skips, torch.zeros(1))

    assert torch.equal(through_cft, net.decode(encoded, 0.0))


def test_the_pipeline_on_onnxruntime_matches_torch_and_a_new_fidelity_skips_the_encoder(onnx_pipeline, restore_weights):
    face = read_image(SAMPLES / "aligned" / "0240.png")
    options = RestoreOptions(aligned=True, fidelity=0.5, exact=True)  # the graphs run float32
    on_torch = Pipeline(WeightStore(restore_weights), device="cpu", backend="torch").run(RestoreRequest(face, options))

    first = onnx_pipeline.run(RestoreRequest(face, options))
    again = onnx_pipeline.run(RestoreRequest(face, dataclasses.replace(options, fidelity=0.8)))

    assert np.abs(first.image.astype(int) - on_torch.image).max() <= 1
    assert "encode" in first.report.timings and "encode" not in again.report.timings
    assert again.report.reused == ["the encoded face"]
    assert np.abs(again.image.astype(int) - first.image).mean() > 0.5, "w=0.8 should change the face"


def test_without_onnxruntime_the_backend_and_export_fail_in_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what find_spec reports for a missing package
    monkeypatch.setitem(sys.modules, "onnx", None)

    restore = cli.main(["restore", str(tmp_path), "-o", str(tmp_path / "out"), "--backend", "onnxruntime"])
    restore_errors = capsys.readouterr().err.strip().splitlines()
    export = cli.main(["export", "onnx", "-o", str(tmp_path / "x.onnx"), "--weights-dir", str(tmp_path)])
    export_errors = capsys.readouterr().err.strip().splitlines()

    assert restore == 1 and restore_errors == [
        "error: The onnxruntime backend needs the onnxruntime and onnx package(s): pip install -r "
        "requirements-onnx.txt (or use the torch backend)."
    ]
    assert export == 1
    assert export_errors == ["error: export needs the onnx package: pip install -r requirements-onnx.txt"]
    assert not (tmp_path / "x.onnx").exists()


def test_a_cuda_device_without_a_gpu_provider_is_refused_in_one_line_before_any_export(monkeypatch, tmp_path):
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    cache = tmp_path / "onnx"

    with pytest.raises(InvalidOptionError) as refused:
        OnnxRuntimeCodeFormer.from_checkpoint("restore", tmp_path / "codeformer.pth", cache, torch.device("cuda"))

    message = str(refused.value)
    assert "\n" not in message and "cuda" in message
    assert "onnxruntime-gpu" in message and "--backend torch" in message
    assert not cache.exists()
    with pytest.raises(InvalidOptionError, match="no GPU provider"):
        providers_for(torch.device("cuda"), cache)


def test_a_cuda_device_takes_the_gpu_providers_this_build_has_then_the_cpu(monkeypatch, tmp_path):
    available = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: available)

    providers = providers_for(torch.device("cuda:1"), tmp_path)

    assert providers == [("CUDAExecutionProvider", {"device_id": "1"}), "CPUExecutionProvider"]


def test_a_replaced_checkpoint_is_exported_again_and_its_old_pair_deleted(monkeypatch, tmp_path):
    from codeformer_core.export import graph_cache
    from codeformer_core.export.onnx_export import ExportedGraphs

    exported = []

    def export(task, checkpoint):  # a stand-in graph: the cache's bookkeeping is what is tested, not the export
        exported.append(checkpoint.read_bytes())
        value = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
        graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "stand-in", [value],
                                       [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
        model = onnx.helper.make_model(graph)
        return ExportedGraphs(task, True, model, model)

    monkeypatch.setattr(graph_cache, "export_checkpoint", export)
    checkpoint, cache = tmp_path / "codeformer.pth", tmp_path / "onnx"
    checkpoint.write_bytes(b"first weights")

    first = graph_cache.ensure_graphs("restore", checkpoint, cache)
    assert graph_cache.ensure_graphs("restore", checkpoint, cache) == first and exported == [b"first weights"]
    assert graph_cache.cached_graphs("restore", checkpoint, cache).encoder.graph.name == "stand-in"

    checkpoint.write_bytes(b"other weights, another size")
    second = graph_cache.ensure_graphs("restore", checkpoint, cache)

    assert exported == [b"first weights", b"other weights, another size"]
    assert second != first and all(path.is_file() for path in second)
    assert sorted(path.name for path in cache.iterdir()) == sorted(path.name for path in second)
