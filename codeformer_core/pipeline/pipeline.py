"""The shared pipeline: image in -> faces found -> faces aligned -> network -> faces pasted back -> image out.

One `Pipeline` per process. It loads each model once, on first use, and keeps it on its device. Everything a run
computes that does not depend on the fidelity w (detections, aligned crops, the network's encode step, the paste
masks, the upscaled background) is kept for the last few images, so moving the fidelity slider on the same image
re-runs only the decoder and the paste-back. The faces as decoded at each w are kept too, so giving one face its
own w decodes that face alone, and leaving a face out (or putting it back) re-runs only the paste-back.
"""

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from ..checks import check_face_index, check_fidelity
from ..device import resolve_device
from ..errors import InvalidOptionError
from ..export.backends import Backend
from ..network.cpu_kernels import CpuKernels, decide_cpu_kernels
from ..network.precision import FastPrecision, Precision, fast_mode_precision, precision_summary
from ..options import RestoreOptions
from ..report import FidelitySweep, RestoreResult
from ..settings import Settings
from ..weights.registry import files_needed
from ..weights.store import WeightStore
from .cache import PreparedCache
from .clock import Progress
from .decode_stage import DecodeStage
from .device_runs import DeviceRuns
from .face_stage import FaceStage
from .models import Models
from .paste_stage import PasteStage
from .request import RestoreRequest
from .state import RunState

DEFAULT_MAX_FACES = 40
DEFAULT_CACHED_IMAGES = 4
SWEEP_FIDELITIES = (0.0, 0.25, 0.5, 0.75, 1.0)


class ImageRestorer(Protocol):
    """What the app, batches and videos need from the engine: a `Pipeline`, or a wrapper that runs one somewhere
    else (the app's ZeroGPU wrapper runs it inside `spaces.GPU` calls)."""

    weights: WeightStore

    def run(self, request: RestoreRequest, *, progress: Progress | None = None) -> RestoreResult: ...

    def run_many(self, requests: Sequence[RestoreRequest]) -> list[RestoreResult]: ...

    def fidelity_sweep(
        self,
        request: RestoreRequest,
        face_index: int = 0,
        fidelities: Sequence[float] = SWEEP_FIDELITIES,
        *,
        progress: Progress | None = None,
    ) -> FidelitySweep: ...

    def frames_per_call(self, frame_size: tuple[int, int], options: RestoreOptions) -> int: ...

    def missing_weights(self, options: RestoreOptions) -> list[str]: ...


class Pipeline:
    """Restores, colorizes or inpaints faces; safe to call from several threads (runs are serialised).

    weights: where pretrained files come from (default: ./weights, then the Hub). device: "auto" (CUDA when
    present), "cpu" or "cuda[:N]". cpu_kernels: which kernels a CPU's float32 convolutions run with ("auto":
    timed once per machine and kept in cpu_kernels_cache; see `network/cpu_kernels.py`); backend: what runs the
    CodeFormer network, "torch", "onnxruntime" or "auto" (see `Settings`). fast_precision: what runs not asked to
    be exact decode in ("auto": bf16 where the device computes it natively, else float32; see `Settings`).
    max_faces: the most faces one image may have restored (the largest are kept). cache_images: how many images'
    w-independent work is kept for a later fidelity.
    """

    def __init__(
        self,
        weights: WeightStore | None = None,
        device: str | None = None,
        *,
        cpu_kernels: CpuKernels = "auto",
        cpu_kernels_cache: Path | None = None,
        backend: Backend = "auto",
        fast_precision: FastPrecision = "auto",
        max_faces: int = DEFAULT_MAX_FACES,
        cache_images: int = DEFAULT_CACHED_IMAGES,
    ) -> None:
        self.device = resolve_device(device)
        self.fast_precision = fast_mode_precision(fast_precision, self.device)
        self.cpu_kernels = (
            decide_cpu_kernels(cpu_kernels, cpu_kernels_cache) if self.device.type == "cpu" else None
        )
        self.weights = weights if weights is not None else WeightStore()
        kernels = self.cpu_kernels.kernels if self.cpu_kernels else "plain"
        self.models = Models(self.weights, self.device, kernels, backend)
        prepared = PreparedCache(cache_images)
        self._runs = DeviceRuns(self.device, forget=prepared.clear)
        self._faces = FaceStage(self.models, prepared, self._runs, max_faces)
        self._decoder = DecodeStage(self.models, self._runs, self._precision)
        self._paste = PasteStage(self.models, self._runs, self._precision)
        self._run_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, device: str | None = None) -> "Pipeline":
        """The pipeline the process's settings describe, on `device` (the command line's)."""
        return cls(
            settings.weight_store(),
            device,
            cpu_kernels=settings.cpu_kernels,
            cpu_kernels_cache=settings.cpu_kernels_cache,
            backend=settings.backend,
            fast_precision=settings.fast_precision,
        )

    def missing_weights(self, options: RestoreOptions) -> list[str]:
        """Files a run with `options` would have to download first (no network is touched to find out)."""
        return self.weights.missing_files(files_needed(options))

    def preload(self, requests: Sequence[RestoreOptions]) -> None:
        """Load now, onto the device, every model runs with these options need (downloading what is missing), so
        that no visitor waits for it; on ZeroGPU models must be on `cuda` before the app starts."""
        for options in requests:
            self.models.codeformer(options.task)
            if options.aligned:
                continue
            self.models.detector(options.detector)
            if options.parse_paste:
                self.models.parser()
            if options.background == "realesrgan" or options.face_upsample:
                self.models.upsampler()

    def run_many(self, requests: Sequence[RestoreRequest]) -> list[RestoreResult]:
        """`run` on each request in turn (a video's frames, say)."""
        return [self.run(request) for request in requests]

    def frames_per_call(self, frame_size: tuple[int, int], options: RestoreOptions) -> int:
        """Frames a video hands to `run_many` at once: one, so that only one decoded frame is held."""
        return 1

    def run(self, request: RestoreRequest, *, progress: Progress | None = None) -> RestoreResult:
        """Process one image (see `RestoreRequest`); `progress` is called with (fraction, message) as stages start.
        A face the options leave out keeps its original pixels."""
        state = RunState.begin(request, progress)
        state.report.precision = precision_summary(self._precision(request.options))
        state.report.cpu_kernels = self.cpu_kernels.describe() if self.cpu_kernels else None
        with self._run_lock, self._runs.memory_errors():
            # 1. The working image: a large photo reduced, a small one enlarged, an aligned face at 512 px.
            state.fit_working_image()
            # 2. The faces as the network takes them: found and aligned, those to restore encoded; what an earlier
            #    run of this image did is kept (face_stage.py).
            prepared = self._faces.prepare(state)
            fidelities = self._faces.fidelities(state, prepared)
            self._faces.encode(state, prepared, list(fidelities))
            # 3. Each face to restore at its own fidelity: decoded (unless an earlier run decoded it at that w),
            #    then what the official code does to its faces (decode_stage.py).
            finished = self._decoder.finished_faces(state, prepared, [*fidelities.items()])
            restored = dict(zip(fidelities, finished, strict=True))
            # 4. The faces back in the photo, upscaled; an aligned face is its own result (paste_stage.py).
            faces = [restored.get(index, crop) for index, crop in enumerate(prepared.crops)]
            output = faces[0] if state.options.aligned else self._paste.pasted_back(state, prepared, restored)
        return state.result(output, faces)

    def fidelity_sweep(
        self,
        request: RestoreRequest,
        face_index: int = 0,
        fidelities: Sequence[float] = SWEEP_FIDELITIES,
        *,
        progress: Progress | None = None,
    ) -> FidelitySweep:
        """Face `face_index` (its index in the report's face list; 0 for an aligned input) restored at each w of
        `fidelities`, from one encoding.

        The image's faces are prepared as `run` prepares them, or taken from what a run of this image kept; then
        only the decoder runs, once per w that face was not decoded at before. Each face equals `run`'s face at that
        w, and a `run` that then picks one of them decodes nothing. Faces rather than whole photos: the photo
        around the face is the same at every w, so five paste-backs would show five copies of it for nothing.
        request: as for `run`, restore only; its options' fidelity and face choices are not read.
        """
        options = request.options
        if options.task != "restore":
            raise InvalidOptionError(
                f"Only restore has a fidelity to compare; {options.task} runs at w={options.effective_fidelity:g}."
            )
        ws = tuple(check_fidelity(w, "a compared fidelity") for w in fidelities)
        state = RunState.begin(request, progress)
        with self._run_lock, self._runs.memory_errors():
            state.fit_working_image()
            prepared = self._faces.prepare(state)
            check_face_index(face_index, len(prepared.detected))
            self._faces.encode(state, prepared, [face_index])
            swept = self._decoder.finished_faces(state, prepared, [(face_index, w) for w in ws])
        return FidelitySweep(face_index, ws, swept, state.clock.timings, state.report.reused)

    def _precision(self, options: RestoreOptions) -> Precision:
        """What the decoder and the face parser run at for `options` (the encoder always runs float32)."""
        return "float32" if options.exact else self.fast_precision
