"""The models of one process: each loaded on first use, then kept on the device.

Loading goes through the weight store, so a missing file is fetched once and a corrupt one is reported, fetched
again and loaded again. One lock per process: concurrent first requests load a model once.
"""

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from .checkpoints import load_network
from .layouts import Task
from .network import CodeFormer
from .network.cpu_convolutions import use_fast_cpu_convolutions
from .options import Detector
from .weights import CODEFORMER_FILES, DETECTOR_FILES, PARSER_FILE, REALESRGAN_FILE, DownloadProgress, WeightStore

T = TypeVar("T")

RETINAFACE_NETWORKS = {"retinaface_resnet50": "resnet50", "retinaface_mobile0.25": "mobile0.25"}


class Models:
    def __init__(self, weights: WeightStore, device: torch.device) -> None:
        self.weights = weights
        self.device = device
        self._loaded: dict[str, Any] = {}
        self._lock = threading.Lock()

    def codeformer(self, task: Task, progress: DownloadProgress | None = None) -> CodeFormer:
        return self._from_file(
            CODEFORMER_FILES[task], lambda path: _tuned_for_device(load_network(task, path, self.device)), progress
        )

    def detector(self, detector: Detector, progress: DownloadProgress | None = None) -> Any:
        """A FaceDetector. Imported here, not at the top: facexlib and dlib are only needed by whole-photo runs."""
        from .detection import DlibDetector, RetinaFaceDetector

        name = DETECTOR_FILES[detector]
        if name is None:
            return self._once("dlib", DlibDetector)
        network = RETINAFACE_NETWORKS[detector]
        return self._from_file(
            name, lambda path: RetinaFaceDetector.from_checkpoint(path, network, self.device), progress
        )

    def parser(self, progress: DownloadProgress | None = None) -> Any:
        from .parsing import FaceParser

        # One face per ParseNet pass: batching gains no speed and costs ~275 MB per extra face at 512 px.
        return self._from_file(
            PARSER_FILE, lambda path: FaceParser.from_checkpoint(path, self.device, max_batch=1), progress
        )

    def upsampler(self, progress: DownloadProgress | None = None) -> Any:
        from .background import BackgroundUpsampler

        return self._from_file(
            REALESRGAN_FILE, lambda path: BackgroundUpsampler.from_checkpoint(path, self.device), progress
        )

    def _from_file(self, name: str, loader: Callable[[Path], T], progress: DownloadProgress | None) -> T:
        return self._once(name, lambda: self.weights.load(name, loader, progress=progress))

    def _once(self, key: str, build: Callable[[], T]) -> T:
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = build()
            return self._loaded[key]


def _tuned_for_device(net: CodeFormer) -> CodeFormer:
    """The CodeFormer network's fastest convolutions on its device, all within the golden bounds
    (tests/test_network_golden.py runs both): Winograd on a CPU (half the convolution time), else a channels_last
    decoder (NHWC is what cuDNN's fast kernels take; on a CPU without NNPACK it still saves ~20% of the decoder)."""
    if use_fast_cpu_convolutions(net):
        return net
    return net.use_channels_last()
