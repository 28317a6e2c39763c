"""CodeFormer's passes recorded once as CUDA graphs and replayed: the same kernels, launched in one call.

At a few faces per pass the eager network waits on the host, which launches its kernels one by one; a replay
launches them in one call. `use_cuda_graphs(net)` has a network run its passes through `CudaGraphPasses`:

- A pass is recorded the first time its shape runs: one key per stage, faces per pass, precision and what
  changes the code path (AdaIN for the encoder; w = 0, which skips the CFT blocks, for the decoder). That first
  pass runs eagerly, as before, and gives the caller its result; a warm-up and the recording follow.
- Later passes of that key copy their inputs into the recording's, replay it, and copy its outputs out: the next
  replay overwrites them. w is one of the decoder's inputs, a float32 scalar on the device, so moving the slider
  replays the same recording; under autocast the CFT blocks read it in the decoder's precision (fp16 moves 0.8 by
  2e-4, bf16 by 8e-4), where an eager pass multiplies by the exact w.
- `CodeFormer.encode` / `decode` check each result's range as they do an eager one's: a replay that overflowed
  fp16 runs again at the fallback precision, a key of its own.
- All recordings of a network share one memory pool and one lock: one replay at a time, its outputs copied out
  before the lock goes, so a pass's activations need room once for all recordings. That pool comes on top of
  the eager passes' memory, and torch.cuda.empty_cache() cannot free it: running out of memory drops every
  recording (the pipeline then retries with fewer faces per pass, recorded anew).
- A pass that cannot be recorded runs eagerly from then on, with a warning in the log.
"""

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import torch
from torch import Tensor

from codeformer_core.network.codeformer import CodeFormer
from codeformer_core.network.encoded import EncodedFaces
from codeformer_core.network.precision import Precision

logger = logging.getLogger(__name__)

R = TypeVar("R", Tensor, EncodedFaces)


class Recorder(Protocol):
    """What records a pass: `CudaGraphRecorder` on CUDA."""

    def record(self, run: Callable[[], R]) -> tuple[R, Callable[[], None]]:
        """`run` warmed up and recorded: (its outputs, which each replay rewrites; the replay)."""
        ...


class CudaGraphRecorder:
    """Records passes as CUDA graphs on `device`, in one memory pool, on a stream of its own.

    torch.cuda.graph() would also empty the device's cache before each recording; the pipeline keeps that cache
    between requests, so the recording calls the graph's capture directly."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._pool = torch.cuda.graph_pool_handle()
        self._stream = torch.cuda.Stream(device)

    def record(self, run: Callable[[], R]) -> tuple[R, Callable[[], None]]:
        graph = torch.cuda.CUDAGraph()
        current = torch.cuda.current_stream(self.device)
        self._stream.wait_stream(current)
        with torch.cuda.stream(self._stream):
            run()  # the warm-up CUDA's rules ask for: libraries set up their handles on this stream, outside the graph
            # Other threads may keep running the device meanwhile; only this one may not wait on it.
            graph.capture_begin(pool=self._pool, capture_error_mode="thread_local")
            try:
                outputs = run()
            finally:
                graph.capture_end()
        current.wait_stream(self._stream)
        return outputs, graph.replay


@dataclass
class _Recording(Generic[R]):
    inputs: list[Tensor]
    """Where each replay reads its inputs: the caller's are copied in first."""
    outputs: R
    replay: Callable[[], None]


class CudaGraphPasses:
    """A network's passes replayed from recordings (see the module docstring); `recorder` records them."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self._recordings: dict[tuple, _Recording | None] = {}
        self._lock = threading.Lock()

    @property
    def recorded(self) -> int:
        """How many passes are recorded now."""
        return sum(recording is not None for recording in self._recordings.values())

    def encode(self, net: CodeFormer, x: Tensor, adain: bool, precision: Precision) -> EncodedFaces:
        def encode_pass(inputs: Sequence[Tensor]) -> EncodedFaces:
            return CodeFormer.encode_pass(net, inputs[0], adain, precision)

        return self._through(("encode", x.shape[0], adain, precision), [x], encode_pass, EncodedFaces.clone)

    def decode(self, net: CodeFormer, encoded: EncodedFaces, w: float, precision: Precision) -> Tensor:
        resolutions = sorted(encoded.skips)
        inputs = [encoded.quant_feat, *(encoded.skips[res] for res in resolutions)]
        if w > 0:
            # Filled on the device: a tensor made from the host's float would be a copy the host waits for.
            inputs.append(torch.full((), w, dtype=torch.float32, device=encoded.quant_feat.device))

        def decode_pass(inputs: Sequence[Tensor]) -> Tensor:
            faces = EncodedFaces(
                quant_feat=inputs[0],
                skips=dict(zip(resolutions, inputs[1 : 1 + len(resolutions)], strict=True)),
                logits=encoded.logits,
                idx=encoded.idx,
                lq_feat=encoded.lq_feat,
            )
            return CodeFormer.decode_pass(net, faces, inputs[-1] if w > 0 else 0.0, precision)

        return self._through(("decode", len(encoded), w > 0, precision), inputs, decode_pass, torch.clone)

    def _through(
        self, key: tuple, inputs: list[Tensor], run: Callable[[Sequence[Tensor]], R], copy_out: Callable[[R], R]
    ) -> R:
        with self._lock:
            try:
                if key not in self._recordings:
                    return self._first(key, inputs, run)
                recording = self._recordings[key]
                if recording is None:
                    return run(inputs)
                for static, value in zip(recording.inputs, inputs, strict=True):
                    static.copy_(value)
                recording.replay()
                return copy_out(recording.outputs)
            except torch.OutOfMemoryError:
                self._recordings.clear()
                raise

    def _first(self, key: tuple, inputs: list[Tensor], run: Callable[[Sequence[Tensor]], R]) -> R:
        """The key's first pass, eager; then its recording, on inputs of the recording's own."""
        result = run(inputs)
        statics = [value.clone() for value in inputs]
        try:
            outputs, replay = self._recorder.record(lambda: run(statics))
        except torch.OutOfMemoryError:  # a RuntimeError too, but one the pipeline answers with fewer faces per pass
            raise
        except RuntimeError as error:  # what torch raises for an operation a graph cannot hold
            logger.warning("CUDA graphs: %s runs eagerly, its recording failed: %s", key, error)
            self._recordings[key] = None
        else:
            self._recordings[key] = _Recording(statics, outputs, replay)
        return result


def use_cuda_graphs(net: CodeFormer) -> CudaGraphPasses:
    """Run `net`'s passes from CUDA graph recordings (its parameters must be on CUDA) until `use_eager_passes`."""
    if net.device.type != "cuda":
        raise ValueError(f"CUDA graphs need the network on a CUDA device; it is on {net.device}")
    return replay_passes(net, CudaGraphPasses(CudaGraphRecorder(net.device)))


def replay_passes(net: CodeFormer, passes: CudaGraphPasses) -> CudaGraphPasses:
    """`net.encode` and `net.decode` run their passes through `passes` (which calls the class's own passes, so
    the instance's stand-ins never call themselves); returns passes."""
    net.encode_pass = lambda x, adain, precision: passes.encode(net, x, adain, precision)
    net.decode_pass = lambda encoded, w, precision: passes.decode(net, encoded, w, precision)
    return passes


def use_eager_passes(net: CodeFormer) -> None:
    """`net` runs its passes eagerly again, as the class defines them."""
    for name in ("encode_pass", "decode_pass"):
        net.__dict__.pop(name, None)
