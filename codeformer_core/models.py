"""The models of one process: each loaded on first use, then kept on the device.

Loading goes through the weight store, so a missing file is fetched (once) and a corrupt one is reported and
fetched again; the lock makes concurrent first requests load a model once.
"""

import threading
from collections.abc import Callable
from typing import Any

import torch

from .layouts import Task
from .options import Detector
from .weights import CODEFORMER_FILES, DETECTOR_FILES, PARSER_FILE, REALESRGAN_FILE, DownloadProgress, WeightStore


class Models:
    def __init__(self, weights: WeightStore, device: torch.device) -> None:
        self.weights = weights
        self.device = device
        self._loaded: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _get(self, key: str, build: Callable[[], Any]) -> Any:
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = build()
            return self._loaded[key]

    def _load_file(self, name: str, loader: Callable[[Any], Any], progress: DownloadProgress | None) -> Any:
        return self.weights.load(name, loader, progress=progress)

    def codeformer(self, task: Task, progress: DownloadProgress | None = None) -> Any:
        from .checkpoints import load_network

        name = CODEFORMER_FILES[task]
        return self._get(name, lambda: self._load_file(name, lambda p: load_network(task, p, self.device), progress))

    def detector(self, detector: Detector, progress: DownloadProgress | None = None) -> Any:
        from .detection import DlibDetector, RetinaFaceDetector

        if detector == "dlib":
            return self._get("dlib", DlibDetector)
        name = DETECTOR_FILES[detector]
        network = "resnet50" if detector == "retinaface_resnet50" else "mobile0.25"
        return self._get(
            name,
            lambda: self._load_file(
                name, lambda p: RetinaFaceDetector.from_checkpoint(p, network=network, device=self.device), progress
            ),
        )

    def parser(self, progress: DownloadProgress | None = None) -> Any:
        from .parsing import FaceParser

        return self._get(
            PARSER_FILE,
            lambda: self._load_file(PARSER_FILE, lambda p: FaceParser.from_checkpoint(p, device=self.device), progress),
        )

    def background(self, progress: DownloadProgress | None = None) -> Any:
        from .background import BackgroundUpsampler

        return self._get(
            REALESRGAN_FILE,
            lambda: self._load_file(
                REALESRGAN_FILE, lambda p: BackgroundUpsampler.from_checkpoint(p, device=self.device), progress
            ),
        )

    def forget(self) -> None:
        """Drop every loaded model (e.g. after a device fault) so the next call loads afresh."""
        with self._lock:
            self._loaded.clear()
