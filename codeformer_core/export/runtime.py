"""The CodeFormer network run by ONNX Runtime: the exported encoder and decoder graphs behind the torch network's
`encode` / `decode`, so that network/batches.py and the pipeline use either, and a new fidelity re-runs only the
decoder graph.

Imported only when the onnxruntime backend is chosen (it imports onnxruntime and onnx). Sessions run on the CPU,
or on a CUDA device through TensorRT's and CUDA's execution providers where the installed onnxruntime has them
(onnxruntime-gpu; a CUDA device without either is refused); either way faces go in and out as float32 CPU
tensors, and ONNX Runtime moves them.
"""

from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch import Tensor

from ..checks import check_fidelity
from ..errors import InvalidOptionError
from ..layouts import Task, task_adain
from ..network.codeformer import CONFIGS, check_faces
from ..network.encoded import EncodedFaces
from ..network.precision import Precision
from .graph_cache import ensure_graphs
from .graphs import FACES, LOGITS, LQ_FEAT, OUTPUT, QUANT_FEAT, WEIGHT, skip_name

CPU = "CPUExecutionProvider"
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
"""Tried in this order on a CUDA device, each where this onnxruntime build has it; the CPU comes last."""
Provider = str | tuple[str, dict[str, str]]
SHRINK_CPU_ARENA = ("memory.enable_memory_arena_shrinkage", "cpu:0")
"""A run option: ONNX Runtime's CPU arena hands the memory a run grew it by back at the run's end. Why: the arena
otherwise keeps a run's activations for the process's life, on top of what torch's stages (ParseNet) use next;
shrinking lowered a face's peak memory at no measurable cost in time (bench/README.md)."""


class OnnxRuntimeCodeFormer:
    """The task's network as two ONNX Runtime sessions. Whatever `precision` asks, the graphs run in float32."""

    def __init__(
        self, task: Task, encoder: onnxruntime.InferenceSession, decoder: onnxruntime.InferenceSession
    ) -> None:
        self._task = task
        self.adain = task_adain(task)
        self.cft_resolutions = CONFIGS[task].cft_resolutions
        self.encoder = encoder
        self.decoder = decoder
        self._encoder_outputs = [output.name for output in encoder.get_outputs()]
        self._run_options = onnxruntime.RunOptions()
        self._run_options.add_run_config_entry(*SHRINK_CPU_ARENA)

    @classmethod
    def from_checkpoint(
        cls, task: Task, checkpoint: Path, cache_dir: Path, device: torch.device
    ) -> "OnnxRuntimeCodeFormer":
        """Sessions on the graphs of `checkpoint` (exported into `cache_dir` on first use; its cost is in
        bench/README.md), placed on `device` as `providers_for` says."""
        providers = providers_for(device, cache_dir)  # before the export: a refused device costs nothing
        encoder_path, decoder_path = ensure_graphs(task, checkpoint, cache_dir)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: ONNX Runtime warns about nodes it places on the CPU
        sessions = (
            onnxruntime.InferenceSession(path, options, providers=providers) for path in (encoder_path, decoder_path)
        )
        return cls(task, *sessions)

    @property
    def task(self) -> Task:
        return self._task

    @property
    def device(self) -> torch.device:
        """Faces are handed over on the CPU, wherever the sessions run."""
        return torch.device("cpu")

    @property
    def providers(self) -> list[str]:
        """The execution providers the sessions run on, best first."""
        return self.decoder.get_providers()

    def encode(self, x: Tensor, adain: bool = True, precision: Precision = "float32") -> EncodedFaces:
        """As `CodeFormer.encode`; AdaIN is fixed in the exported graph, so `adain` must be the task's own."""
        check_faces(x, torch.float32, self.device)
        if adain != self.adain:
            raise InvalidOptionError(f"the exported {self.task} network runs with adain={self.adain}; got {adain}")
        arrays = self.encoder.run(None, {FACES: np.ascontiguousarray(x.numpy())}, self._run_options)
        named = {name: torch.from_numpy(array) for name, array in zip(self._encoder_outputs, arrays, strict=True)}
        return EncodedFaces(
            quant_feat=named[QUANT_FEAT],
            skips={res: named[skip_name(res)] for res in self.cft_resolutions},
            logits=named[LOGITS],
            idx=named[LOGITS].argmax(dim=2),
            lq_feat=named[LQ_FEAT],
        )

    def decode(self, encoded: EncodedFaces, w: float, precision: Precision = "float32") -> Tensor:
        """As `CodeFormer.decode`: N x 3 x 512 x 512, [-1, 1] space, RGB, not clamped."""
        feeds = {QUANT_FEAT: encoded.quant_feat, **{skip_name(res): encoded.skips[res] for res in self.cft_resolutions}}
        arrays = {name: np.ascontiguousarray(tensor.numpy()) for name, tensor in feeds.items()}
        arrays[WEIGHT] = np.array([check_fidelity(w)], np.float32)
        (output,) = self.decoder.run([OUTPUT], arrays, self._run_options)
        return torch.from_numpy(output)


def providers_for(device: torch.device, cache_dir: Path) -> list[Provider]:
    """ONNX Runtime's execution providers for `device`: on CUDA, TensorRT (engines cached in `cache_dir`/tensorrt:
    built once, which takes minutes) and CUDA where this build has them; the CPU always, last.
    InvalidOptionError, in one line, for a CUDA device when this build has neither (it would run on the CPU)."""
    available = onnxruntime.get_available_providers()
    chosen: list[Provider] = []
    if device.type == "cuda":
        device_id = str(device.index or 0)
        extra = {
            "TensorrtExecutionProvider": {
                "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": str(cache_dir / "tensorrt"),
            },
        }
        for name in GPU_PROVIDERS:
            if name in available:
                chosen.append((name, {"device_id": device_id, **extra.get(name, {})}))
        if not chosen:
            raise InvalidOptionError(
                f"The onnxruntime backend cannot run on {device}: the installed onnxruntime has no GPU provider "
                f"(only {', '.join(available)}). Install onnxruntime-gpu instead of onnxruntime, "
                "or use --backend torch."
            )
    return [*chosen, CPU]
