"""The app's network calls on a ZeroGPU Space: each runs inside a `spaces.GPU` function, for as long as its request
needs.

On ZeroGPU a GPU exists only inside functions decorated with `@spaces.GPU`. Each call runs in a process forked
from the app at start-up, holding a GPU for the `duration` the call asks for (the shorter, the sooner a visitor's
call is scheduled; a call that runs past it is stopped). So:
- the models are loaded and moved to `cuda` before the app starts (`Pipeline.preload` in `app.main`), where ZeroGPU
  packs them for every call;
- only the pipeline runs inside a call; reading uploads and writing results stay outside, costing no GPU time;
- arguments and results cross the process boundary by pickling: images are numpy arrays, never CUDA tensors;
- an engine error inside a call comes back as a value and is raised again outside, so its one-line message
  reaches the visitor (ZeroGPU would report any other exception as a bare "worker error");
- what a call caches (the encoded faces a new fidelity would reuse) lives in the call's process, which ZeroGPU
  reuses only sometimes: a new fidelity may run the whole pipeline again.

Durations follow the rule in `run_seconds`, from the request's size, and are deliberately generous: a call that
outlives its duration is lost, and a call that asks for less is scheduled sooner only while it fits.
"""

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

from codeformer_core.errors import CodeFormerError
from codeformer_core.hardware import GPU_SECONDS_PER_FACE
from codeformer_core.layouts import FACE_SIZE
from codeformer_core.options import RestoreOptions
from codeformer_core.pipeline import SWEEP_FIDELITIES, Pipeline, Progress, RestoreRequest
from codeformer_core.report import FidelitySweep, RestoreResult

SETUP_SECONDS = 10.0
"""Attaching a GPU to the call and moving the preloaded models onto it (their size: bench/README.md, Weights)."""
SECONDS_PER_FACE = 5 * GPU_SECONDS_PER_FACE
"""Network, ParseNet and paste-back for one face: five times what a visitor is told to expect, since a call that
outlives its duration is lost."""
SECONDS_PER_OUTPUT_MEGAPIXEL = 0.5
"""Resizing and blending at output size, on the CPU side of the call."""
REALESRGAN_SECONDS_PER_MEGAPIXEL = 3.0
"""Real-ESRGAN x2plus per input megapixel, tiles included."""
FACES_WHEN_UNKNOWN = 8
"""Before detection a photo's face count is unknown: a group photo's worth is asked for."""
FACES_PER_VIDEO_FRAME = 4
MAX_CALL_SECONDS = 120
"""The longest call asked for: a batch is split into one call per photo and a video into groups of frames that
fit."""
MAX_FRAME_BYTES_PER_CALL = 1 << 30
"""Frames of one call cross the process boundary twice (in, and out upscaled): their size is bounded too."""

T = TypeVar("T")
P = ParamSpec("P")

GpuDecorator = Callable[..., Callable[[Callable[..., Any]], Callable[..., Any]]]
"""`spaces.GPU`: GPU(duration=seconds or a function of the call's arguments) -> decorator."""


def run_seconds(request: RestoreRequest) -> int:
    """The GPU seconds one `Pipeline.run` of `request` is granted: the call's set-up, then faces, output pixels and
    Real-ESRGAN by the figures above, at most MAX_CALL_SECONDS."""
    face_count = len(request.faces) if request.faces is not None else FACES_WHEN_UNKNOWN
    return _seconds(SETUP_SECONDS + _work_seconds(request.image.size, request.options, face_count))


def sweep_seconds(request: RestoreRequest, face_index: int, fidelities: Sequence[float]) -> int:
    """The GPU seconds for a fidelity sweep: a whole run's worth (the call may start from nothing kept), plus one
    decode per further w."""
    decodes = math.ceil(len(fidelities) * SECONDS_PER_FACE)
    return min(MAX_CALL_SECONDS, run_seconds(request) + decodes)


def run_many_seconds(requests: Sequence[RestoreRequest]) -> int:
    """The GPU seconds for `Pipeline.run_many` (a video's frames): one set-up, every frame's work."""
    work = sum(_work_seconds(r.image.size, r.options, FACES_PER_VIDEO_FRAME) for r in requests)
    return _seconds(SETUP_SECONDS + work)


def _errors_as_values(call: Callable[P, T]) -> Callable[P, T | CodeFormerError]:
    """`call`, returning an engine error instead of raising it, so that it crosses out of the GPU call and `_raised`
    raises it again for the visitor."""

    @functools.wraps(call)
    def returning_errors(*args: P.args, **kwargs: P.kwargs) -> T | CodeFormerError:
        try:
            return call(*args, **kwargs)
        except CodeFormerError as error:
            return error

    return returning_errors


class ZeroGpuRestorer:
    """A `Pipeline` whose runs happen inside `spaces.GPU` calls; everything else is the pipeline's own.

    gpu: `spaces.GPU` (tests pass a stand-in that records each call).
    """

    def __init__(self, pipeline: Pipeline, gpu: GpuDecorator) -> None:
        self.pipeline = pipeline
        self.weights = pipeline.weights
        self._run_on_gpu = gpu(duration=run_seconds)(self._run)
        self._run_many_on_gpu = gpu(duration=run_many_seconds)(self._run_many)
        self._sweep_on_gpu = gpu(duration=sweep_seconds)(self._sweep)

    def run(self, request: RestoreRequest, *, progress: Progress | None = None) -> RestoreResult:
        """`Pipeline.run` in one GPU call. `progress` is not passed on: a callback cannot cross into the call's
        process, and a GPU run is over in seconds."""
        return _raised(self._run_on_gpu(request))

    def run_many(self, requests: Sequence[RestoreRequest]) -> list[RestoreResult]:
        return _raised(self._run_many_on_gpu(list(requests)))

    def fidelity_sweep(
        self,
        request: RestoreRequest,
        face_index: int = 0,
        fidelities: Sequence[float] = SWEEP_FIDELITIES,
        *,
        progress: Progress | None = None,
    ) -> FidelitySweep:
        """`Pipeline.fidelity_sweep` in one GPU call (without `progress`, as `run`)."""
        return _raised(self._sweep_on_gpu(request, face_index, tuple(fidelities)))

    def frames_per_call(self, frame_size: tuple[int, int], options: RestoreOptions) -> int:
        """As many frames as fit in MAX_CALL_SECONDS and MAX_FRAME_BYTES_PER_CALL."""
        width, height = frame_size
        by_time = int((MAX_CALL_SECONDS - SETUP_SECONDS) // _work_seconds(frame_size, options, FACES_PER_VIDEO_FRAME))
        by_memory = MAX_FRAME_BYTES_PER_CALL // (3 * width * height * (1 + options.upscale**2))
        return max(1, min(by_time, by_memory))

    def missing_weights(self, options: RestoreOptions) -> list[str]:
        return self.pipeline.missing_weights(options)

    @_errors_as_values
    def _run(self, request: RestoreRequest) -> RestoreResult:
        return self.pipeline.run(request)

    @_errors_as_values
    def _run_many(self, requests: list[RestoreRequest]) -> list[RestoreResult]:
        return self.pipeline.run_many(requests)

    @_errors_as_values
    def _sweep(self, request: RestoreRequest, face_index: int, fidelities: tuple[float, ...]) -> FidelitySweep:
        return self.pipeline.fidelity_sweep(request, face_index, fidelities)


def zero_gpu_restorer(pipeline: Pipeline) -> ZeroGpuRestorer:
    """The pipeline behind the real `spaces.GPU`. `spaces` must already have been imported before anything touched
    CUDA (`app.main` does it first); importing it here only fetches the module."""
    import spaces

    return ZeroGpuRestorer(pipeline, spaces.GPU)


def _raised(outcome: T | CodeFormerError) -> T:
    if isinstance(outcome, CodeFormerError):
        raise outcome
    return outcome


def _work_seconds(size: tuple[int, int], options: RestoreOptions, face_count: int) -> float:
    """Seconds of work for one image of `size` (width, height) beyond the call's set-up."""
    if options.aligned:
        return SECONDS_PER_FACE + FACE_SIZE * FACE_SIZE / 1e6 * SECONDS_PER_OUTPUT_MEGAPIXEL
    width, height = size
    # The pipeline enlarges a photo whose shorter side is below 512 px, as the official code does.
    working_megapixels = width * height * max(1.0, FACE_SIZE / min(width, height)) ** 2 / 1e6
    seconds = face_count * SECONDS_PER_FACE + working_megapixels * options.upscale**2 * SECONDS_PER_OUTPUT_MEGAPIXEL
    if options.background == "realesrgan" and options.upscale > 1:
        seconds += working_megapixels * REALESRGAN_SECONDS_PER_MEGAPIXEL
    if options.face_upsample and options.upscale > 1:
        seconds += face_count * FACE_SIZE * FACE_SIZE / 1e6 * REALESRGAN_SECONDS_PER_MEGAPIXEL
    return seconds


def _seconds(seconds: float) -> int:
    return min(MAX_CALL_SECONDS, math.ceil(seconds))
