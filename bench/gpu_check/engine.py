"""Every engine and golden-vector symbol the GPU check uses, imported here and nowhere else in bench/gpu_check/,
so a module that moves in codeformer_core is fixed in this one place.

Also what the check needs from them that they do not offer as such:
- the dry run's narrower network (the published one takes ~8 s per face on a 2-core CPU): only the width of the
  VQGAN's first level changes, every other shape and all the code stay as they are;
- stand-in weight files written where the check runs: a CodeFormer file is ~370 MB and ParseNet's ~80 MB, more
  than a device call can carry (64 MiB), and the golden fill rule needs only numpy.
"""

import contextlib
import copy
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor

from codeformer_core.errors import DeviceError
from codeformer_core.faces.detection import DetectedFace, faces_from_report
from codeformer_core.images import LoadedImage, read_image
from codeformer_core.network import CodeFormer, build_network, composite_inpainting, reduced_precision
from codeformer_core.network import codeformer as network_definition
from codeformer_core.network import precision as precision_module
from codeformer_core.network.batches import (
    crops_to_tensor,
    decode_faces,
    encode_faces,
    tensor_to_crops,
)
from codeformer_core.network.parsenet import ParseNet
from codeformer_core.network.precision import DecoderOverflows, computing_at, fast_mode_precision
from codeformer_core.network.reduced_weights import use_cast_once_weights
from codeformer_core.options import RestoreOptions
from codeformer_core.pipeline import Pipeline, RestoreRequest
from codeformer_core.pipeline.clock import StageClock
from codeformer_core.settings import HubSettings
from codeformer_core.weights.registry import CODEFORMER_FILES, PARSER_FILE, REGISTRY
from codeformer_core.weights.store import WeightStore
from tests.support import golden as golden_vectors
from tests.support.shared_data import SHARED_DIR_VARIABLE

from .candidates.cuda_graphs import CudaGraphPasses, use_cuda_graphs, use_eager_passes
from .timing import counted, swapped

__all__ = [
    "CodeFormer", "DetectedFace", "DeviceError", "LoadedImage", "OverflowEvents", "Pipeline", "RestoreOptions",
    "RestoreRequest", "StageClock", "composite_inpainting", "computing_at", "crops_to_tensor", "cuda_graph_passes",
    "decode_faces", "encode_faces", "faces_from_report", "fast_mode_precision", "filled_network", "golden_input",
    "narrow_networks", "offline_pipeline", "overflow_events", "precision_module", "published_state_dict",
    "read_image", "reduced_precision", "reference_arrays", "tensor_to_crops", "triton_network",
    "triton_norms_problem", "use_cast_once_weights", "use_golden_dir", "write_pipeline_weights",
]

golden_input = golden_vectors.golden_input
reference_arrays = golden_vectors.reference_arrays
published_state_dict = golden_vectors.golden_state_dict
"""The golden fill of the published shapes (`<task>.keys.json`), whatever width this process builds."""


def narrow_networks(width: int) -> None:
    """Build every CodeFormer network of this process `width` channels wide at its first level (published: 64).

    Dry run only: the VQGAN's shape is a module constant of the engine, read whenever a network is built.
    """
    network_definition.VQGAN_SHAPE["nf"] = width


def use_golden_dir(directory: Path) -> None:
    """Read the golden vectors from `directory`: on a GPU machine the carried copy (beside its samples/), as it
    has no ../shared."""
    os.environ[SHARED_DIR_VARIABLE] = str(directory.parent)
    golden_vectors.reference_arrays.cache_clear()


def filled_state_dict(task: str) -> dict[str, Tensor]:
    """The task's weights by the golden fill rule for the shapes this process builds (at the published width,
    exactly the golden state_dict)."""
    skeleton = network_definition.network_skeleton(task)
    return {name: golden_vectors.golden_tensor(name, tuple(t.shape)) for name, t in skeleton.state_dict().items()}


def filled_network(task: str, device: torch.device) -> CodeFormer:
    """The task's network with golden-filled weights on `device`: float32, default memory layout, eval mode."""
    net = build_network(task)
    net.load_state_dict(filled_state_dict(task), strict=True)
    return net.to(device)


def write_pipeline_weights(directory: Path) -> Path:
    """codeformer.pth (restore, golden fill, in the published {"params_ema": ...} form) and parsing_parsenet.pth
    (a bare state_dict like the published file) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.save({"params_ema": filled_state_dict("restore")}, directory / CODEFORMER_FILES["restore"])
    torch.save(_parser_state_dict(), directory / PARSER_FILE)
    return directory


def _parser_state_dict() -> dict[str, Tensor]:
    """ParseNet's tensors by the golden fill rule, except running variances (1 to 1.1: the rule's small signed
    values would make the folded batch norms divide by the square root of a negative) and integer counters (0)."""
    with torch.device("meta"):
        skeleton = ParseNet()
    state = {}
    for name, tensor in skeleton.state_dict().items():
        shape = tuple(tensor.shape)
        if not tensor.is_floating_point():
            state[name] = torch.zeros(shape, dtype=tensor.dtype)
        elif name.endswith("running_var"):
            state[name] = 1.0 + golden_vectors.golden_tensor(name, shape).abs()
        else:
            state[name] = golden_vectors.golden_tensor(name, shape)
    return state


def offline_pipeline(weights_dir: Path, device: torch.device) -> Pipeline:
    """The engine's pipeline on `weights_dir`, never reaching for a network. The stand-in files' sizes and
    digests are not the official ones, so the registry is given neither (else the store would refuse them)."""
    registry = {name: replace(entry, size=None, sha256=None) for name, entry in REGISTRY.items()}
    store = WeightStore(weights_dir, hub=HubSettings(offline=True), allow_url_fallback=False, registry=registry)
    return Pipeline(store, str(device))


@dataclass
class OverflowEvents:
    """What the engine did about reduced precision's range while a block ran."""

    reruns: list[tuple] = field(default_factory=list)
    """One entry per network pass whose results overflowed and ran again at the engine's `overflow_fallback`."""
    fallback_starts: list[tuple] = field(default_factory=list)
    """(asked, started, w) per decode that started at the fallback, after an earlier decode overflowed at that w or
    a lower one (`DecoderOverflows`)."""

    def extend(self, other: "OverflowEvents") -> None:
        self.reruns.extend(other.reruns)
        self.fallback_starts.extend(other.fallback_starts)

    def describe(self, passes: int | None = None) -> str:
        """A note for a row ("" when nothing happened), starting with "; "; `passes`: how many network passes the
        block asked for, when known."""
        parts = []
        if self.reruns:
            of = f" of {passes}" if passes is not None else ""
            parts.append(f"{len(self.reruns)}{of} network passes out of their precision's range ran again at the "
                         "engine's fallback")
        if self.fallback_starts:
            asked, started, _ = self.fallback_starts[0]
            lowest = min(w for _, _, w in self.fallback_starts)
            parts.append(f"{len(self.fallback_starts)} decodes (w >= {lowest:g}) started in {started} instead of "
                         f"{asked}, after an earlier one overflowed")
        return "".join(f"; {part}" for part in parts)


@contextlib.contextmanager
def overflow_events() -> Iterator[OverflowEvents]:
    """The overflow reruns and fallback starts of the engine while the block runs."""
    original = DecoderOverflows.start_precision
    with counted(network_definition, "overflow_fallback") as reruns:
        events = OverflowEvents(reruns=reruns)

        def start_precision(self: DecoderOverflows, precision: str, w: float, device: torch.device) -> str:
            started = original(self, precision, w, device)
            if started != precision:
                events.fallback_starts.append((precision, started, w))
            return started

        with swapped(DecoderOverflows, "start_precision", start_precision):
            yield events


@contextlib.contextmanager
def cuda_graph_passes(net: CodeFormer) -> Iterator[CudaGraphPasses]:
    """`net` replays its passes from CUDA graphs while the block runs (recorded anew), eagerly afterwards."""
    passes = use_cuda_graphs(net)
    try:
        yield passes
    finally:
        use_eager_passes(net)


def triton_norms_problem() -> str | None:
    """Why the Triton GroupNorm kernels cannot run in this process, or None."""
    try:
        import triton  # noqa: F401 - only whether it imports
    except ImportError as error:
        return f"Triton is not installed ({error})"
    return None


def triton_network(net: CodeFormer, channels_last: bool) -> CodeFormer:
    """A copy of `net` whose GroupNorms run the Triton kernels on reduced-precision features, its decoder
    channels_last (the layout cuDNN's fp16 convolutions work in, which torch's GroupNorm is slow on) or not."""
    from .candidates.triton_group_norm import use_triton_group_norms

    copied = copy.deepcopy(net)
    use_triton_group_norms(copied)
    return copied.use_channels_last(channels_last)

