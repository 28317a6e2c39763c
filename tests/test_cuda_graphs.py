"""The CUDA-graphs candidate (bench/gpu_check/candidates/cuda_graphs.py): passes recorded once and replayed.

CUDA graphs need a GPU (bench/gpu_check measures them there); here a recorder that replays the way a graph does
stands in for one: its outputs are tensors of the recording's own, rewritten by each replay from the recording's
inputs. So a replay that read the caller's tensors instead of the copies, or handed out its outputs uncopied,
fails these tests as it would on a GPU.
"""

import copy
import logging
import math
from collections.abc import Callable, Iterator

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench.gpu_check.candidates.cuda_graphs import CudaGraphPasses, replay_passes, use_cuda_graphs, use_eager_passes
from codeformer_core.network import codeformer as network_definition
from codeformer_core.network.codeformer import CodeFormer, build_network
from codeformer_core.network.encoded import EncodedFaces
from tests.support.golden import golden_tensor

NARROW_WIDTH = 32  # channels of the first VQGAN level (published: 64): the same code, a quarter of the work
HOST_BOUND_OPERATIONS = {
    "aten._local_scalar_dense",  # .item(), bool(tensor), a tensor used as a Python number
    "aten.nonzero", "aten.masked_select", "aten.unique", "aten._unique2",  # outputs sized by the values
    "aten.lift_fresh",  # torch.tensor(data): values from the host, frozen into a recording
    "aten.equal", "aten.is_nonzero",
}
"""Operations a CUDA graph cannot hold: each waits for the device, or takes values the host holds at recording."""


class ReplayingRecorder:
    """Records `run` as a CUDA graph would: outputs of its own, which each replay rewrites."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.records = 0
        self.fail_with = fail_with

    def record(self, run: Callable[[], object]) -> tuple[object, Callable[[], None]]:
        self.records += 1
        if self.fail_with is not None:
            raise self.fail_with
        outputs = run()
        return outputs, lambda: _copy_into(outputs, run())


def _copy_into(outputs: object, fresh: object) -> None:
    if isinstance(outputs, EncodedFaces):
        for name in ("quant_feat", "logits", "idx", "lq_feat"):
            getattr(outputs, name).copy_(getattr(fresh, name))
        for res, skip in outputs.skips.items():
            skip.copy_(fresh.skips[res])
    else:
        outputs.copy_(fresh)


@pytest.fixture(scope="module")
def eager_net() -> Iterator[CodeFormer]:
    shape = network_definition.VQGAN_SHAPE
    saved = shape["nf"]
    shape["nf"] = NARROW_WIDTH
    try:
        net = build_network("restore")
    finally:
        shape["nf"] = saved
    net.load_state_dict({name: golden_tensor(name, tuple(t.shape)) for name, t in net.state_dict().items()})
    yield net


def _replaying(net: CodeFormer, recorder: ReplayingRecorder) -> CodeFormer:
    replaying = copy.deepcopy(net)
    replaying.passes = replay_passes(replaying, CudaGraphPasses(recorder))
    return replaying


def _faces(count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 3, 512, 512, generator=generator) * 2 - 1


def _assert_same_encoded(got: EncodedFaces, expected: EncodedFaces) -> None:
    assert torch.equal(got.quant_feat, expected.quant_feat) and torch.equal(got.idx, expected.idx)
    assert torch.equal(got.logits, expected.logits) and torch.equal(got.lq_feat, expected.lq_feat)
    assert got.skips.keys() == expected.skips.keys()
    assert all(torch.equal(got.skips[res], expected.skips[res]) for res in got.skips)


def test_replays_give_the_eager_results_on_new_faces_and_new_w_and_leave_earlier_results_alone(
    eager_net: CodeFormer,
) -> None:
    recorder = ReplayingRecorder()
    net = _replaying(eager_net, recorder)
    first_faces, other_faces = _faces(1, seed=1), _faces(1, seed=2)

    first = net.encode(first_faces)  # eager, then recorded
    first_out = net.decode(first, 0.5)
    assert recorder.records == 2
    other = net.encode(other_faces)  # replayed
    other_out = net.decode(other, 0.8)  # replayed at another w: w is an input of the recording
    again = net.encode(first_faces)  # the same recordings again, over the outputs of the replays above
    again_out = net.decode(again, 0.5)
    codebook_out = net.decode(other, 0.0)  # w = 0 skips the CFT blocks: a recording of its own
    assert recorder.records == 3 and net.passes.recorded == 3

    expected_other = eager_net.encode(other_faces)
    _assert_same_encoded(other, expected_other)
    assert torch.equal(other_out, eager_net.decode(expected_other, 0.8))
    assert torch.equal(codebook_out, eager_net.decode(expected_other, 0.0))
    expected_first = eager_net.encode(first_faces)
    _assert_same_encoded(first, expected_first)
    _assert_same_encoded(again, expected_first)
    assert torch.equal(first_out, eager_net.decode(expected_first, 0.5)) and torch.equal(again_out, first_out)
    assert not torch.equal(first_out, other_out)


def test_another_number_of_faces_gets_a_recording_of_its_own(eager_net: CodeFormer) -> None:
    recorder = ReplayingRecorder()
    net = _replaying(eager_net, recorder)
    faces = _faces(2, seed=3)
    net.encode(faces)
    one = net.encode(faces[1:])
    assert recorder.records == 2
    _assert_same_encoded(one, eager_net.encode(faces[1:]))


def test_a_pass_that_cannot_be_recorded_runs_eagerly_from_then_on_with_a_warning(
    eager_net: CodeFormer, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = ReplayingRecorder(fail_with=RuntimeError("operation not permitted when stream is capturing"))
    net = _replaying(eager_net, recorder)
    faces = _faces(1, seed=4)
    with caplog.at_level(logging.WARNING):
        first = net.encode(faces)
        again = net.encode(faces)
    assert recorder.records == 1 and net.passes.recorded == 0
    assert [record.getMessage() for record in caplog.records] == [
        "CUDA graphs: ('encode', 1, True, 'float32') runs eagerly, its recording failed: operation not permitted "
        "when stream is capturing"
    ]
    expected = eager_net.encode(faces)
    _assert_same_encoded(first, expected)
    _assert_same_encoded(again, expected)


def test_running_out_of_memory_drops_every_recording_and_reaches_the_caller(eager_net: CodeFormer) -> None:
    recorder = ReplayingRecorder()
    net = _replaying(eager_net, recorder)
    faces = _faces(1, seed=5)
    encoded = net.encode(faces)
    net.decode(encoded, 0.5)
    assert net.passes.recorded == 2
    recorder.fail_with = torch.OutOfMemoryError("CUDA out of memory")
    with pytest.raises(torch.OutOfMemoryError):
        net.decode(encoded, 0.0)  # a new key: its recording runs out of memory
    assert net.passes.recorded == 0
    recorder.fail_with = None
    assert torch.equal(net.decode(encoded, 0.5), eager_net.decode(eager_net.encode(faces), 0.5))
    assert net.passes.recorded == 1


def test_a_replay_out_of_range_runs_again_at_the_fallback(
    eager_net: CodeFormer, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = ReplayingRecorder()
    net = _replaying(eager_net, recorder)
    generate = net.generate

    def overflowing_under_autocast(quant_feat, skips, w):  # fp16 running out of range, on the CPU
        out = generate(quant_feat, skips, w)
        return out * math.inf if torch.is_autocast_enabled("cpu") else out

    monkeypatch.setattr(net, "generate", overflowing_under_autocast)
    faces = _faces(1, seed=6)
    encoded = net.encode(faces)
    expected = eager_net.decode(eager_net.encode(faces), 0.5)
    for _ in range(2):  # recorded at bf16, then replayed: both out of range, both run again in float32
        assert torch.equal(net.decode(encoded, 0.5, precision="bf16"), expected)
    assert recorder.records == net.passes.recorded == 3  # the encoder, the decoder in bf16 and in float32


def test_off_cuda_the_candidate_is_refused_and_a_network_goes_back_to_eager_passes(eager_net: CodeFormer) -> None:
    with pytest.raises(ValueError, match="need the network on a CUDA device; it is on cpu"):
        use_cuda_graphs(eager_net)
    recorder = ReplayingRecorder()
    net = _replaying(eager_net, recorder)
    faces = _faces(1, seed=5)
    use_eager_passes(net)
    _assert_same_encoded(net.encode(faces), eager_net.encode(faces))
    assert recorder.records == 0


class _Operations(TorchDispatchMode):
    """The names of the operations dispatched while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.overloadpacket._qualified_op_name.replace("::", "."))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_a_pass_runs_no_operation_a_graph_cannot_hold(eager_net: CodeFormer, precision: str) -> None:
    faces = _faces(1, seed=7)
    w = torch.full((), 0.5)
    encoded = eager_net.encode_pass(faces, True, precision)
    seen = []
    for run in (lambda: eager_net.encode_pass(faces, True, precision),
                lambda: eager_net.encode_pass(faces, False, precision),
                lambda: eager_net.decode_pass(encoded, w, precision)):
        with _Operations() as operations:
            run()
        seen.append(operations.names)
    assert all("aten.conv2d" in names for names in seen)  # the mode saw the passes' operations
    assert [names & HOST_BOUND_OPERATIONS for names in seen] == [set(), set(), set()]
