"""The models of one process: each loaded on first use, tuned for its device, then kept there.

Loading goes through the weight store, so a missing file is fetched once and a corrupt one is reported, fetched
again and loaded again. One lock per process: concurrent first requests load a model once.
"""

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from ..export.backends import Backend, resolve_backend
from ..layouts import Task
from ..network import CodeFormer, FaceNetwork
from ..network.cpu_convolutions import use_fast_cpu_convolutions
from ..network.cpu_kernels import KernelChoice
from ..network.loading import load_network
from ..network.reduced_weights import use_cast_once_weights
from ..options import Detector
from ..weights.registry import CODEFORMER_FILES, DETECTOR_FILES, PARSER_FILE, REALESRGAN_FILE
from ..weights.sources import DownloadProgress

if TYPE_CHECKING:  # imported when first used: facexlib, dlib and realesrgan serve only some runs
    from ..faces.detection import FaceDetector
    from ..faces.parsing import FaceParser
    from ..network.realesrgan import BackgroundUpsampler
    from ..weights.store import WeightStore

T = TypeVar("T")

RETINAFACE_NETWORKS = {"retinaface_resnet50": "resnet50", "retinaface_mobile0.25": "mobile0.25"}


class Models:
    """weights: where files come from; device: where every model lives; cpu_kernels: which kernels a CPU's
    convolutions run with (decided by `network/cpu_kernels.py`); backend: what runs CodeFormer ("auto" resolved
    here, once: see export/backends.py)."""

    def __init__(
        self,
        weights: "WeightStore",
        device: torch.device,
        cpu_kernels: KernelChoice = "plain",
        backend: Backend = "auto",
    ) -> None:
        self.weights = weights
        self.device = device
        self.cpu_kernels = cpu_kernels
        self.backend = resolve_backend(backend)
        self._loaded: dict[str, Any] = {}
        self._lock = threading.Lock()

    def codeformer(self, task: Task, progress: DownloadProgress | None = None) -> FaceNetwork:
        """The task's network on this backend; the onnxruntime backend exports the checkpoint on first use."""
        if self.backend == "onnxruntime":
            from ..export.graph_cache import cache_dir
            from ..export.runtime import OnnxRuntimeCodeFormer

            graphs_dir = cache_dir(self.weights.weights_dir)

            def load(path: Path) -> FaceNetwork:
                return OnnxRuntimeCodeFormer.from_checkpoint(task, path, graphs_dir, self.device)
        else:

            def load(path: Path) -> FaceNetwork:
                return self._tuned(load_network(task, path, self.device))

        return self._from_file(CODEFORMER_FILES[task], load, progress)

    def detector(self, detector: Detector, progress: DownloadProgress | None = None) -> "FaceDetector":
        from ..faces.detection import DlibDetector, RetinaFaceDetector

        name = DETECTOR_FILES[detector]
        if name is None:
            return self._once("dlib", DlibDetector)
        network = RETINAFACE_NETWORKS[detector]
        return self._from_file(
            name, lambda path: RetinaFaceDetector.from_checkpoint(path, network, self.device), progress
        )

    def parser(self, progress: DownloadProgress | None = None) -> "FaceParser":
        from ..faces.parsing import FaceParser

        def load(path: Path) -> FaceParser:
            parser = FaceParser.from_checkpoint(path, self.device)
            if self.device.type != "cpu":
                return parser
            if self.cpu_kernels == "winograd":
                use_fast_cpu_convolutions(parser.network)
            if self.cpu_kernels == "channels-last":
                parser.use_channels_last()
            return parser

        return self._from_file(PARSER_FILE, load, progress)

    def upsampler(self, progress: DownloadProgress | None = None) -> "BackgroundUpsampler":
        from ..network.realesrgan import BackgroundUpsampler

        return self._from_file(
            REALESRGAN_FILE, lambda path: BackgroundUpsampler.from_checkpoint(path, self.device), progress
        )

    def _tuned(self, net: CodeFormer) -> CodeFormer:
        """The CodeFormer network's fastest convolutions on its device, all within the golden bounds
        (tests/test_network_golden.py runs each): on CUDA the default layout, which measured faster there
        (bench/results-cuda.md), with fast mode's weights cast once (`reduced_weights`); on a CPU the kernels
        `network/cpu_kernels.py` chose."""
        if self.device.type == "cuda":
            use_cast_once_weights(net)
            return net
        if self.cpu_kernels == "winograd":
            use_fast_cpu_convolutions(net)
        return net.use_channels_last() if self.cpu_kernels == "channels-last" else net

    def _from_file(self, name: str, loader: Callable[[Path], T], progress: DownloadProgress | None) -> T:
        return self._once(name, lambda: self.weights.load(name, loader, progress=progress))

    def _once(self, key: str, build: Callable[[], T]) -> T:
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = build()
            return self._loaded[key]
