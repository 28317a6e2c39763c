"""The shared pipeline: image in -> faces found -> faces aligned -> network -> faces pasted back -> image out.

One `Pipeline` per process. It loads each model once, on first use, and keeps it on its device. Everything a run
computes that does not depend on the fidelity w (detections, aligned crops, the network's encode step, the paste
masks, the upscaled background) is kept for the last few images, so moving the fidelity slider on the same image
re-runs only the decoder and the paste-back. The faces as decoded at each w are kept too, so giving one face its
own w decodes that face alone, and leaving a face out (or putting it back) re-runs only the paste-back.
"""

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TypeVar

import cv2
import numpy as np
import torch

from ..device import resolve_device
from ..errors import DeviceError, InvalidOptionError
from ..faces.alignment import FFHQ_TEMPLATE_512, align_faces, estimate_alignment
from ..faces.detection import DetectedFace, select_faces
from ..faces.gray import gray_like_input, to_gray
from ..faces.inpaint import keep_outside_holes, only_in_holes, warp_mask_to_faces, whiten_holes
from ..faces.paste import FaceBlend, blend_faces, draw_face_boxes, face_blend
from ..images import LoadedImage
from ..layouts import FACE_SIZE, BGRImage, FaceCrop, Mask
from ..memory import on_own_thread
from ..network import EncodedFaces
from ..network.batches import batch_size_for, decode_faces, encode_faces
from ..network.cpu_kernels import decide_cpu_kernels
from ..network.precision import Precision, fast_mode_precision, precision_summary
from ..options import RestoreOptions, check_face_index, check_fidelity
from ..report import FidelitySweep, RestoreResult, face_report
from ..settings import Backend, CpuKernels, FastPrecision, Settings
from ..weights.registry import files_needed
from ..weights.store import WeightStore
from .background import realesrgan_refusal, upscaled_background
from .cache import PreparedCache, PreparedFaces, prepared_key
from .clock import Progress
from .models import Models
from .state import RunState, scaled_face

T = TypeVar("T")

DEFAULT_MAX_FACES = 40
DEFAULT_CACHED_IMAGES = 4
SWEEP_FIDELITIES = (0.0, 0.25, 0.5, 0.75, 1.0)


class ImageRestorer(Protocol):
    """What the app, batches and videos need from the engine: a `Pipeline`, or a wrapper that runs one somewhere
    else (the app's ZeroGPU wrapper runs it inside `spaces.GPU` calls)."""

    weights: WeightStore

    def run(
        self,
        image: LoadedImage,
        options: RestoreOptions,
        *,
        mask: Mask | None = None,
        faces: Sequence[DetectedFace] | None = None,
        progress: Progress | None = None,
    ) -> RestoreResult: ...

    def run_many(self, images: Sequence[LoadedImage], options: RestoreOptions) -> list[RestoreResult]: ...

    def fidelity_sweep(
        self,
        image: LoadedImage,
        options: RestoreOptions,
        face_index: int = 0,
        fidelities: Sequence[float] = SWEEP_FIDELITIES,
        *,
        faces: Sequence[DetectedFace] | None = None,
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
        self.max_faces = max_faces
        self._prepared = PreparedCache(cache_images)
        self._run_lock = threading.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        device: str | None = None,
        weights_dir: Path | None = None,
        backend: Backend | None = None,
        fast_precision: FastPrecision | None = None,
    ) -> "Pipeline":
        """The pipeline the process's settings describe; `device`, `weights_dir`, `backend` and `fast_precision`
        (None: the settings') come from the command line or the hardware profile."""
        return cls(
            WeightStore.from_settings(settings, weights_dir),
            device,
            cpu_kernels=settings.cpu_kernels,
            cpu_kernels_cache=settings.cpu_kernels_cache,
            backend=backend or settings.backend,
            fast_precision=fast_precision or settings.fast_precision,
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

    def run_many(self, images: Sequence[LoadedImage], options: RestoreOptions) -> list[RestoreResult]:
        """`run` on each image in turn (a video's frames, say), with the same options."""
        return [self.run(image, options) for image in images]

    def frames_per_call(self, frame_size: tuple[int, int], options: RestoreOptions) -> int:
        """Frames a video hands to `run_many` at once: one, so that only one decoded frame is held."""
        return 1

    def run(
        self,
        image: LoadedImage,
        options: RestoreOptions,
        *,
        mask: Mask | None = None,
        faces: Sequence[DetectedFace] | None = None,
        progress: Progress | None = None,
    ) -> RestoreResult:
        """Process one image.

        mask: for inpaint, H x W with values > 0.5 at the holes; without it, the image's pure-white pixels are
          the holes (the official convention).
        faces: faces in input-image pixels (as a report lists them), used instead of running the detector; the
          usual filters (tiny faces, the centre face, the face limit) still apply.
        progress: called with (fraction, message) as stages start.
        The options' face choices (`only_faces`, `skip_faces`, `face_fidelities`) name faces by their index in the
        report's face list; a face left out keeps its original pixels.
        """
        state = RunState.begin(image, options, mask=mask, given=faces, progress=progress)
        state.report.precision = precision_summary(self._precision(options))
        state.report.cpu_kernels = self.cpu_kernels.describe() if self.cpu_kernels else None
        with self._run_lock, self._device_memory_errors():
            # 1. The working image: a large photo reduced, a small one enlarged, an aligned face at 512 px.
            state.fit_working_image()
            # 2. The faces as the network takes them: found and aligned, those to restore encoded; what an earlier
            #    run of this image did is kept.
            prepared = self._prepared_faces(state)
            fidelities = self._face_fidelities(state, prepared)
            self._encode(state, prepared, list(fidelities))
            # 3. Each face to restore at its own fidelity: decoded (unless an earlier run decoded it at that w),
            #    then what the official code does to its faces.
            restored = dict(zip(fidelities, self._finished_faces(state, prepared, [*fidelities.items()]), strict=True))
            # 4. The faces back in the photo, upscaled; an aligned face is its own result.
            faces = [restored.get(index, crop) for index, crop in enumerate(prepared.crops)]
            output = faces[0] if state.options.aligned else self._pasted_back(state, prepared, restored)
        return state.result(output, faces)

    def fidelity_sweep(
        self,
        image: LoadedImage,
        options: RestoreOptions,
        face_index: int = 0,
        fidelities: Sequence[float] = SWEEP_FIDELITIES,
        *,
        faces: Sequence[DetectedFace] | None = None,
        progress: Progress | None = None,
    ) -> FidelitySweep:
        """Face `face_index` (its index in the report's face list; 0 for an aligned input) restored at each w of
        `fidelities`, from one encoding.

        The image's faces are prepared as `run` prepares them, or taken from what a run of this image kept; then
        only the decoder runs, once per w that face was not decoded at before. Each face equals `run`'s face at that
        w, and a `run` that then picks one of them decodes nothing. Faces rather than whole photos: the photo
        around the face is the same at every w, so five paste-backs would show five copies of it for nothing.
        options: as for `run`, restore only; its fidelity and face choices are not read.
        """
        if options.task != "restore":
            raise InvalidOptionError(
                f"Only restore has a fidelity to compare; {options.task} runs at w={options.effective_fidelity:g}."
            )
        ws = tuple(check_fidelity(w, "a compared fidelity") for w in fidelities)
        state = RunState.begin(image, options, mask=None, given=faces, progress=progress)
        with self._run_lock, self._device_memory_errors():
            state.fit_working_image()
            prepared = self._prepared_faces(state)
            check_face_index(face_index, len(prepared.detected))
            self._encode(state, prepared, [face_index])
            swept = self._finished_faces(state, prepared, [(face_index, w) for w in ws])
        return FidelitySweep(face_index, ws, swept, state.clock.timings, state.report.reused)

    def _precision(self, options: RestoreOptions) -> Precision:
        """What the decoder and the face parser run at for `options` (the encoder always runs float32)."""
        return "float32" if options.exact else self.fast_precision

    # ---------------------------------------------------------------- stage 2: faces found, aligned, encoded

    def _prepared_faces(self, state: RunState) -> PreparedFaces:
        """The image's faces found and aligned (not yet encoded), or as an earlier run of this image left them."""
        options = state.options
        key = prepared_key(state.working.bgr, state.holes, options, state.given)
        prepared = self._prepared.get(key)
        if prepared is not None:
            if not options.aligned:
                state.report.reused.append("face detection and alignment")
        else:
            detected = [_whole_crop_face()] if options.aligned else self._detect(state)
            with state.clock.stage("align", "Aligning faces"):
                affines = [] if options.aligned else [estimate_alignment(face.landmarks) for face in detected]
                crops = [state.working.bgr] if options.aligned else align_faces(state.working.bgr, affines)
                face_holes = None
                if state.holes is not None:
                    face_holes = [state.holes] if options.aligned else warp_mask_to_faces(state.holes, affines)
            prepared = PreparedFaces(detected, affines, crops, face_holes)
            self._prepared.put(key, prepared)
        state.report.faces = [
            face_report(face.box / state.scale, face.landmarks / state.scale, face.score)
            for face in prepared.detected
        ]
        if not prepared.detected:
            state.report.notices.append("No face was found in this image; it was only upscaled.")
        return prepared

    def _detect(self, state: RunState) -> list[DetectedFace]:
        """The faces to restore, in working pixels: the ones given, or the detector's (run on the photo before a
        small photo's enlargement), filtered as the official code filters them and capped at `max_faces`."""
        options, clock = state.options, state.clock
        if state.given is None:
            with clock.stage("load detector", "Loading the face detector"):
                detector = self.models.detector(options.detector, progress=clock.download_progress)
        with clock.stage("detect", "Finding faces" if state.given is None else "Taking the faces given"):
            if state.given is None:
                found = [scaled_face(face, state.enlarged) for face in detector.detect(state.detection_bgr)]
            else:
                found = state.given
            detected = select_faces(
                found, state.working.bgr.shape, only_center_face=options.only_center_face, max_faces=self.max_faces
            )
        if len(found) > len(detected) and not options.only_center_face:
            state.report.adjustments.append(
                f"{len(found)} faces were found; the {len(detected)} largest were processed (limit {self.max_faces})."
            )
        return detected

    def _face_fidelities(self, state: RunState, prepared: PreparedFaces) -> dict[int, float]:
        """Face index -> w for the faces to restore; the report says which w each face got (None: kept
        original). A choice naming a face the image does not have is refused here, before any network runs."""
        plan = state.options.face_fidelity_plan(len(prepared.detected))
        for face, w in zip(state.report.faces, plan, strict=True):
            face.restored, face.fidelity = w is not None, w
        return {index: w for index, w in enumerate(plan) if w is not None}

    def _encode(self, state: RunState, prepared: PreparedFaces, indices: list[int]) -> None:
        """The network's w-independent half for the faces at `indices` that no earlier run encoded, on the crops
        as the task's network takes them."""
        options = state.options
        missing = [index for index in indices if index not in prepared.encoded_indices]
        if indices and not missing:
            state.report.reused.append("the encoded face" if options.aligned else "encoded faces")
        if not missing:
            return
        crops = [prepared.crops[index] for index in missing]
        if options.task == "colorize":
            crops = [to_gray(crop) for crop in crops]
        if prepared.face_holes is not None:
            holes = [prepared.face_holes[index] for index in missing]
            crops = [whiten_holes(crop, hole) for crop, hole in zip(crops, holes, strict=True)]
        with state.clock.stage("load network", "Loading CodeFormer"):
            net = self.models.codeformer(options.task, progress=state.clock.download_progress)

        def encode(batch: int) -> list[tuple[tuple[int, ...], EncodedFaces]]:
            parts = encode_faces(net, crops, adain=options.adain, batch=batch)
            held = [tuple(missing[start : start + batch]) for start in range(0, len(missing), batch)]
            return list(zip(held, parts, strict=True))

        with state.clock.stage("encode", f"Encoding {len(crops)} face(s)"):
            prepared.encoded.extend(self._network_stage(encode))

    # ---------------------------------------------------------------- stage 3: each face at its fidelity

    def _finished_faces(
        self, state: RunState, prepared: PreparedFaces, wanted: list[tuple[int, float]]
    ) -> list[FaceCrop]:
        """Face `index` at w for each (index, w) in `wanted`, as it will be pasted: kept from an earlier run of this
        image, or decoded now (one decoder pass per w, over the faces that need it)."""
        upsample = state.upscale if state.options.face_upsample and state.upscale > 1 else 1
        keys = [(index, w, upsample) for index, w in wanted]
        found = {key: prepared.finished.get(key) for key in keys}
        kept = sorted({index for (index, _, _), face in found.items() if face is not None})
        if kept:
            state.report.reused.append(f"decoded face{'s' if len(kept) > 1 else ''} {', '.join(map(str, kept))}")
        missing: dict[float, list[int]] = {}
        for index, w, _ in (key for key, face in found.items() if face is None):
            missing.setdefault(w, []).append(index)
        for w, indices in missing.items():
            for index, face in self._decoded(state, prepared, indices, w).items():
                found[index, w, upsample] = face
                prepared.finished.put((index, w, upsample), face)
        prepared.finished.trim(in_use=set(keys))
        return [found[key] for key in keys]

    def _decoded(
        self, state: RunState, prepared: PreparedFaces, indices: list[int], w: float
    ) -> dict[int, FaceCrop]:
        """The faces at `indices` through the decoder at w, then what the official code does to its faces."""
        options = state.options
        net = self.models.codeformer(options.task)
        with state.clock.stage("decode", f"Decoding {len(indices)} face(s) at fidelity {w:g}"):
            order, encoded = prepared.encoded_faces(indices)
            faces = self._network_stage(
                lambda batch: decode_faces(net, encoded, fidelity=w, precision=self._precision(options), batch=batch)
            )
        crops = [prepared.crops[index] for index in order]
        if prepared.face_holes is not None:
            faces = keep_outside_holes(faces, crops, [prepared.face_holes[index] for index in order])
        if state.working.is_gray and options.task == "restore":
            faces = [gray_like_input(face, crop) for face, crop in zip(faces, crops, strict=True)]
        elif state.working.is_gray and options.task == "inpaint" and not options.aligned:
            # Our whole-photo inpaint keeps a grey photo grey; the official inpaint script (aligned faces only)
            # leaves the network's colours, and the crop's white holes would skew the tint matching.
            faces = [to_gray(face) for face in faces]
        if options.face_upsample and state.upscale > 1:
            upsampler = self.models.upsampler(progress=state.clock.download_progress)
            with state.clock.stage("face upsample", "Upsampling faces"):
                faces = [upsampler.upsample(face, outscale=state.upscale) for face in faces]
        return dict(zip(order, faces, strict=True))

    # ---------------------------------------------------------------- stage 4: pasted back into the photo

    def _pasted_back(self, state: RunState, prepared: PreparedFaces, restored: dict[int, FaceCrop]) -> BGRImage:
        """The background with the restored faces blended in; a face left out keeps the background's pixels."""
        options = state.options
        background = self._background(state, prepared)
        output = background
        if prepared.detected:
            masks = self._paste_masks(state, prepared, restored)
            with state.clock.stage("paste", "Pasting faces back"):
                blends = self._face_blends(state, prepared, restored, masks, background.shape)
                output = blend_faces(background, list(restored.values()), blends)
                if state.holes is not None:
                    output = only_in_holes(output, background, state.holes, state.upscale)
        if options.draw_boxes:
            output = draw_face_boxes(output, prepared.detected, state.upscale)
        if options.task == "colorize" and restored:
            state.report.notices.append("Only the faces were colorized; the rest of the photo keeps its colours.")
        return output

    def _background(self, state: RunState, prepared: PreparedFaces) -> BGRImage:
        """The working image at output size, kept with the image's prepared faces for the next fidelity."""
        key = (state.upscale, state.options.background)
        if key in prepared.backgrounds:
            state.report.reused.append("upscaled background")
            return prepared.backgrounds[key]
        bgr = state.working.bgr
        upsampler = None
        if state.options.background == "realesrgan" and state.upscale > 1:
            refusal = realesrgan_refusal(state.detection_bgr.shape, self.device)
            if refusal is None:
                upsampler = self.models.upsampler(progress=state.clock.download_progress)
            else:
                state.report.adjustments.append(refusal)
        with state.clock.stage("background", "Upscaling the background"):
            prepared.backgrounds[key] = upscaled_background(bgr, state.upscale, upsampler, state.detection_bgr)
        return prepared.backgrounds[key]

    def _paste_masks(
        self, state: RunState, prepared: PreparedFaces, restored: dict[int, FaceCrop]
    ) -> list[Mask] | None:
        """Soft masks of the restored faces, in their order, or None for the plain eroded-square paste.

        Each face is parsed once per image, the first time it is pasted, on the face as restored then (at that
        run's w for it): the blurred mask barely moves with w.
        """
        if not state.options.parse_paste:
            return None
        unparsed = [index for index in restored if index not in prepared.paste_masks]
        if len(unparsed) < len(restored):
            state.report.reused.append("paste masks")
        if unparsed:
            with state.clock.stage("load parser", "Loading the face parser"):
                parser = self.models.parser(progress=state.clock.download_progress)
            face_size = [
                cv2.resize(restored[index], (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA) for index in unparsed
            ]
            with state.clock.stage("parse", "Parsing faces for paste-back"):
                precision = self._precision(state.options)
                masks = self._network_stage(lambda batch: parser.paste_masks(face_size, precision, batch))
            prepared.paste_masks.update(zip(unparsed, masks, strict=True))
        return [prepared.paste_masks[index] for index in restored]

    def _face_blends(
        self, state: RunState, prepared: PreparedFaces, restored: dict[int, FaceCrop], masks: list[Mask] | None,
        output_shape: tuple[int, ...],
    ) -> list[FaceBlend | None]:
        """Each restored face's blend into the output, made the first time the face is pasted at this upscale and
        size, and kept with the image's prepared faces: at another w only the faces' pixels change."""
        face_masks: list[Mask | None] = [None] * len(restored) if masks is None else list(masks)
        keys = [(index, state.upscale, face.shape[0]) for index, face in restored.items()]
        if any(key in prepared.blends for key in keys):
            state.report.reused.append("paste blends")
        for key, mask in zip(keys, face_masks, strict=True):
            if key not in prepared.blends:
                index, upscale, side = key
                prepared.blends[key] = face_blend(prepared.affines[index], mask, side, upscale, output_shape)
        return [prepared.blends[key] for key in keys]

    # ---------------------------------------------------------------- running networks

    def _network_stage(self, work: Callable[[int], T]) -> T:
        """work(faces per batch); on a CPU on a thread of its own, so that NNPACK's per-thread workspace and the
        heap it freed go when it ends (`memory.on_own_thread`); out of memory on a GPU frees the device's cache
        and runs work again with half the faces per batch, down to one."""

        def with_retry() -> T:
            batch = batch_size_for(self.device)
            while True:
                try:
                    return work(batch)
                except torch.OutOfMemoryError:
                    if batch == 1:
                        raise
                    self._free_device_memory()
                    batch //= 2

        return on_own_thread(with_retry) if self.device.type == "cpu" else with_retry()

    @contextmanager
    def _device_memory_errors(self) -> Iterator[None]:
        try:
            yield
        except torch.OutOfMemoryError as error:
            self._free_device_memory()
            raise DeviceError(
                "The device ran out of memory on this image. Try a smaller image, a lower upscale, or --device cpu."
            ) from error

    def _free_device_memory(self) -> None:
        self._prepared.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _whole_crop_face() -> DetectedFace:
    """An aligned input is itself the face, its landmarks where the template puts them."""
    return DetectedFace(
        box=np.array([0, 0, FACE_SIZE, FACE_SIZE], np.float32),
        landmarks=np.asarray(FFHQ_TEMPLATE_512, np.float32),
        score=1.0,
    )
