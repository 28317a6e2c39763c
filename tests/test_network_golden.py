"""The network against the reference implementation's outputs in ../shared/golden/ (README there is the spec).

Each task's network is built once, filled by the golden rule, encoded once and decoded at the README's w values,
so matching the reference also proves that decode(encode(x)) is the reference's forward. Colorize goes through
`forward` to pin that entry point as well.
"""

import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from codeformer_core.compat import nnpack_available
from codeformer_core.images import read_image
from codeformer_core.layouts import TASKS
from codeformer_core.network import CodeFormer, build_network, composite_inpainting, reduced_precision
from codeformer_core.network.batches import tensor_to_crops
from codeformer_core.network.cpu_convolutions import use_fast_cpu_convolutions
from codeformer_core.options import RestoreOptions
from codeformer_core.pipeline import Pipeline, RestoreRequest
from codeformer_core.settings import HubSettings
from codeformer_core.weights import WeightStore
from tests.support.golden import golden_dir, golden_input, golden_state_dict, manifest, reference_arrays

FEATURE_TOLERANCE = 1e-4
OUTPUT_TOLERANCE = 1e-3  # times max |reference|
FIDELITIES = {"restore": (0.0, 0.5, 1.0), "colorize": (0.0,), "inpaint": (1.0,)}


@dataclass
class GoldenRun:
    task: str
    net: CodeFormer
    x: torch.Tensor
    logits: torch.Tensor
    idx: torch.Tensor
    lq_feat: torch.Tensor
    outputs: dict[float, torch.Tensor]
    cft_calls: dict[float, int]


@pytest.fixture(scope="module", params=TASKS)
def run(request: pytest.FixtureRequest) -> GoldenRun:
    task = request.param
    net = build_network(task)
    net.load_state_dict(golden_state_dict(task), strict=True)
    x = golden_input(task)
    adain = task != "inpaint"
    calls = _count_cft_calls(net)
    outputs, cft_calls = {}, {}
    if task == "colorize":
        (w,) = FIDELITIES[task]
        out, logits, lq_feat = net(x, w=w, adain=adain)
        idx = logits.argmax(dim=2)
        outputs[w], cft_calls[w] = out, calls.pop()
    else:
        encoded = net.encode(x, adain=adain)
        logits, idx, lq_feat = encoded.logits, encoded.idx, encoded.lq_feat
        for w in FIDELITIES[task]:
            outputs[w], cft_calls[w] = net.decode(encoded, w), calls.pop()
    return GoldenRun(task, net, x, logits, idx, lq_feat, outputs, cft_calls)


def _count_cft_calls(net: CodeFormer) -> "_CallCounter":
    counter = _CallCounter()
    for block in net.fuse_convs_dict.values():
        block.register_forward_hook(counter.hook)
    return counter


class _CallCounter:
    def __init__(self) -> None:
        self.count = 0

    def hook(self, *_: object) -> None:
        self.count += 1

    def pop(self) -> int:
        count, self.count = self.count, 0
        return count


def test_state_dict_has_the_published_keys_and_shapes(run: GoldenRun) -> None:
    ours = [(name, tuple(t.shape)) for name, t in run.net.state_dict().items()]
    assert ours == manifest(run.task)


def test_network_is_float32_cpu_eval(run: GoldenRun) -> None:
    tensors = list(run.net.state_dict().values())
    assert {t.dtype for t in tensors} == {torch.float32}
    assert {t.device.type for t in tensors} == {"cpu"}
    assert not any(m.training for m in run.net.modules())


def test_code_indices_are_identical(run: GoldenRun) -> None:
    expected = reference_arrays(run.task)["idx"].astype(np.int64)
    assert run.idx.shape == (1, 256)
    np.testing.assert_array_equal(run.idx[0].numpy(), expected)


@pytest.mark.parametrize("name", ["logits", "lq_feat"])
def test_features_within_bound(run: GoldenRun, name: str) -> None:
    ours = getattr(run, name).numpy()
    expected = reference_arrays(run.task)[name]
    assert ours.shape == expected.shape
    assert np.abs(ours - expected).max() <= FEATURE_TOLERANCE


def test_outputs_within_bound(run: GoldenRun) -> None:
    for w, out in run.outputs.items():
        expected = reference_arrays(run.task)[f"out_w{w:g}"]
        assert out.shape == expected.shape and out.dtype == torch.float32
        error = np.abs(out.numpy() - expected).max()
        assert error <= OUTPUT_TOLERANCE * np.abs(expected).max(), f"w={w}: max error {error}"


def test_cft_runs_only_when_w_is_positive(run: GoldenRun) -> None:
    blocks = len(run.net.config.cft_resolutions)
    assert run.cft_calls == {w: (blocks if w > 0 else 0) for w in FIDELITIES[run.task]}


@pytest.mark.parametrize("run", ["inpaint"], indirect=True)
def test_inpaint_composite_keeps_input_outside_holes(run: GoldenRun) -> None:
    composite = composite_inpainting(run.x, run.outputs[1.0])
    expected = reference_arrays("inpaint")["composite_w1"]
    holes = (run.x == 1.0).all(dim=1, keepdim=True).expand_as(run.x)
    assert 0 < holes.float().mean() < 1
    assert torch.equal(composite[~holes], run.x[~holes])
    assert np.abs(composite.numpy() - expected).max() <= OUTPUT_TOLERANCE * np.abs(expected).max()


@pytest.mark.parametrize("run", ["restore"], indirect=True)
def test_channels_last_network_keeps_codes_exact_and_stays_within_bounds(run: GoldenRun) -> None:
    run.net.use_channels_last()
    try:
        encoded = run.net.encode(run.x)
        out = run.net.decode(encoded, 1.0)
    finally:
        run.net.use_channels_last(False)
    reference = reference_arrays("restore")
    assert np.array_equal(encoded.idx[0].numpy(), reference["idx"])
    assert np.abs(encoded.logits.numpy() - reference["logits"]).max() <= FEATURE_TOLERANCE
    assert np.abs(encoded.lq_feat.numpy() - reference["lq_feat"]).max() <= FEATURE_TOLERANCE
    assert encoded.skips[256].is_contiguous(memory_format=torch.channels_last)
    expected = reference["out_w1"]
    assert np.abs(out.numpy() - expected).max() <= OUTPUT_TOLERANCE * np.abs(expected).max()


def test_fast_cpu_convolutions_keep_codes_exact_and_features_within_bound(nnpack_calls: list) -> None:
    if not nnpack_available():
        pytest.skip("this torch build has no NNPACK")
    net = build_network("restore")
    net.load_state_dict(golden_state_dict("restore"), strict=True)
    assert use_fast_cpu_convolutions(net) > 0
    encoded = net.encode(golden_input("restore"))
    out = net.decode(encoded, 0.5)
    reference = reference_arrays("restore")
    widths = [shape[-1] for shape in nnpack_calls]
    assert min(widths) >= 32 and max(widths) == 512
    assert np.array_equal(encoded.idx[0].numpy(), reference["idx"])
    assert np.abs(encoded.logits.numpy() - reference["logits"]).max() <= FEATURE_TOLERANCE
    assert np.abs(encoded.lq_feat.numpy() - reference["lq_feat"]).max() <= FEATURE_TOLERANCE
    expected = reference["out_w0.5"]
    assert np.abs(out.numpy() - expected).max() <= OUTPUT_TOLERANCE * np.abs(expected).max()


PIPELINE_FIDELITY = {"restore": 0.5, "colorize": 0.0, "inpaint": 1.0}
PIPELINE_REFERENCE = {"restore": "out_w0.5", "colorize": "out_w0", "inpaint": "composite_w1"}


@pytest.mark.parametrize("task", TASKS)
def test_the_pipeline_in_fast_mode_keeps_float32s_codes_and_exact_mode_meets_the_golden_outputs(
    task: str, official_checkpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fast mode at this machine's reduced precision (bf16 where native, as on the development and CI machines).
    store = WeightStore(official_checkpoint(task).parent, hub=HubSettings(offline=True))
    pipeline = Pipeline(store, "cpu")
    codes, decodes = [], []
    encode, decode = CodeFormer.encode, CodeFormer.decode

    def recording_encode(net: CodeFormer, x: torch.Tensor, adain: bool = True, precision: str = "float32"):
        encoded = encode(net, x, adain, precision)
        codes.append(encoded.idx[0].numpy())
        return encoded

    def recording_decode(net: CodeFormer, encoded, w: float, precision: str = "float32") -> torch.Tensor:
        decodes.append(precision)
        return decode(net, encoded, w, precision)

    monkeypatch.setattr(CodeFormer, "encode", recording_encode)
    monkeypatch.setattr(CodeFormer, "decode", recording_decode)
    face = read_image(golden_dir() / f"{task}_input.png")
    options = RestoreOptions(task=task, aligned=True, fidelity=PIPELINE_FIDELITY[task], upscale=1)

    pipeline.run(RestoreRequest(face, options))
    exact = pipeline.run(RestoreRequest(face, dataclasses.replace(options, exact=True)))

    reference = reference_arrays(task)
    assert decodes == [reduced_precision("cpu"), "float32"] and len(codes) == 2  # each mode encodes once
    for idx in codes:
        np.testing.assert_array_equal(idx, reference["idx"])
    expected = tensor_to_crops(torch.from_numpy(reference[PIPELINE_REFERENCE[task]]))[0]
    gap = np.abs(exact.faces[0].astype(int) - expected)
    assert gap.max() <= 1 and gap.mean() < 0.05
