"""The shared pipeline: image in -> faces found -> faces aligned -> network -> faces pasted back -> image out.

One `Pipeline` per process. It loads each model once, on first use, and keeps it on its device. Everything a run
computes that does not depend on the fidelity w (detections, aligned crops, the network's encode step, the paste
masks, the upscaled background) is kept for the last few images, so moving the fidelity slider on the same image
re-runs only the decoder and the paste-back.
"""

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import torch

from ..device import resolve_device
from ..errors import DeviceError
from ..faces.alignment import FFHQ_TEMPLATE_512, align_faces, estimate_alignment
from ..faces.detection import DetectedFace, select_faces
from ..faces.gray import gray_like_input, to_gray
from ..faces.inpaint import keep_outside_holes, only_in_holes, warp_mask_to_faces, whiten_holes
from ..faces.paste import draw_face_boxes, paste_faces
from ..images import LoadedImage
from ..layouts import FACE_SIZE, BGRImage, FaceCrop, Mask
from ..memory import on_own_thread
from ..network import EncodedFaces
from ..network.batches import batch_size_for, decode_faces, encode_faces
from ..options import RestoreOptions
from ..report import RestoreResult, face_report
from ..settings import Backend, CpuKernels, Settings
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


class Pipeline:
    """Restores, colorizes or inpaints faces; safe to call from several threads (runs are serialised).

    weights: where pretrained files come from (default: ./weights, then the Hub). device: "auto" (CUDA when
    present), "cpu" or "cuda[:N]". cpu_kernels: which CPU convolutions run; backend: what runs the CodeFormer
    network, "torch", "onnxruntime" or "auto" (see `Settings`). max_faces: the most
    faces one image may have restored (the largest are kept). cache_images: how many images' w-independent work
    is kept for a later fidelity.
    """

    def __init__(
        self,
        weights: WeightStore | None = None,
        device: str | None = None,
        *,
        cpu_kernels: CpuKernels = "fast",
        backend: Backend = "auto",
        max_faces: int = DEFAULT_MAX_FACES,
        cache_images: int = DEFAULT_CACHED_IMAGES,
    ) -> None:
        self.device = resolve_device(device)
        self.weights = weights if weights is not None else WeightStore()
        self.models = Models(self.weights, self.device, cpu_kernels, backend)
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
    ) -> "Pipeline":
        """The pipeline the process's settings describe; `device`, `weights_dir` and `backend` are command-line
        options (None: the settings')."""
        return cls(
            WeightStore.from_settings(settings, weights_dir),
            device,
            cpu_kernels=settings.cpu_kernels,
            backend=backend or settings.backend,
        )

    def missing_weights(self, options: RestoreOptions) -> list[str]:
        """Files a run with `options` would have to download first (no network is touched to find out)."""
        return self.weights.missing_files(files_needed(options))

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
        """
        state = RunState.begin(image, options, mask=mask, given=faces, progress=progress)
        with self._run_lock, self._device_memory_errors():
            # 1. The working image: a large photo reduced, a small one enlarged, an aligned face at 512 px.
            state.fit_working_image()
            # 2. The faces as the network takes them: found, aligned and encoded, or kept from an earlier run.
            prepared = self._prepared_faces(state)
            # 3. The decoder at this run's fidelity, then what the official code does to its faces.
            restored = self._restored_faces(state, prepared)
            # 4. The faces back in the photo, upscaled; an aligned face is its own result.
            output = restored[0] if state.options.aligned else self._pasted_back(state, prepared, restored)
        return state.result(output, restored)

    # ---------------------------------------------------------------- stage 2: faces found, aligned, encoded

    def _prepared_faces(self, state: RunState) -> PreparedFaces:
        options = state.options
        key = prepared_key(state.working.bgr, state.holes, options, state.given)
        prepared = self._prepared.get(key)
        if prepared is not None:
            reused = "the encoded face" if options.aligned else "face detection, alignment and encoding"
            state.report.reused.append(reused)
        else:
            detected = [_whole_crop_face()] if options.aligned else self._detect(state)
            with state.clock.stage("align", "Aligning faces"):
                affines = [] if options.aligned else [estimate_alignment(face.landmarks) for face in detected]
                crops = [state.working.bgr] if options.aligned else align_faces(state.working.bgr, affines)
                face_holes = None
                if state.holes is not None:
                    face_holes = [state.holes] if options.aligned else warp_mask_to_faces(state.holes, affines)
            prepared = PreparedFaces(detected, affines, crops, face_holes, self._encode(state, crops, face_holes))
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

    def _encode(
        self, state: RunState, crops: list[FaceCrop], face_holes: list[Mask] | None
    ) -> list[EncodedFaces]:
        """The network's w-independent half, on the crops as the task's network takes them."""
        if not crops:
            return []
        options = state.options
        if options.task == "colorize":
            crops = [to_gray(crop) for crop in crops]
        if face_holes is not None:
            crops = [whiten_holes(crop, hole) for crop, hole in zip(crops, face_holes, strict=True)]
        with state.clock.stage("load network", "Loading CodeFormer"):
            net = self.models.codeformer(options.task, progress=state.clock.download_progress)
        with state.clock.stage("encode", f"Encoding {len(crops)} face(s)"):
            return self._network_stage(
                lambda batch: encode_faces(net, crops, adain=options.adain, fast=options.fast, batch=batch)
            )

    # ---------------------------------------------------------------- stage 3: decoded at this fidelity

    def _restored_faces(self, state: RunState, prepared: PreparedFaces) -> list[FaceCrop]:
        """The faces at this run's fidelity, as they will be pasted (upsampled if asked)."""
        if not prepared.crops:
            return []
        options = state.options
        net = self.models.codeformer(options.task)
        w = options.effective_fidelity
        with state.clock.stage("decode", f"Decoding {len(prepared.crops)} face(s) at fidelity {w:g}"):
            faces = self._network_stage(
                lambda batch: decode_faces(net, prepared.encoded, fidelity=w, fast=options.fast, batch=batch)
            )
        if prepared.face_holes is not None:
            faces = keep_outside_holes(faces, prepared.crops, prepared.face_holes)
        if state.working.is_gray and options.task == "restore":
            faces = [gray_like_input(face, crop) for face, crop in zip(faces, prepared.crops, strict=True)]
        elif state.working.is_gray and options.task == "inpaint" and not options.aligned:
            # Our whole-photo inpaint keeps a grey photo grey; the official inpaint script (aligned faces only)
            # leaves the network's colours, and the crop's white holes would skew the tint matching.
            faces = [to_gray(face) for face in faces]
        if options.face_upsample and state.upscale > 1:
            upsampler = self.models.upsampler(progress=state.clock.download_progress)
            with state.clock.stage("face upsample", "Upsampling faces"):
                faces = [upsampler.upsample(face, outscale=state.upscale) for face in faces]
        return faces

    # ---------------------------------------------------------------- stage 4: pasted back into the photo

    def _pasted_back(self, state: RunState, prepared: PreparedFaces, faces: list[FaceCrop]) -> BGRImage:
        options = state.options
        background = self._background(state, prepared)
        output = background
        if faces:
            masks = self._paste_masks(state, prepared, faces)
            with state.clock.stage("paste", "Pasting faces back"):
                output = paste_faces(background, faces, prepared.affines, masks, state.upscale)
                if state.holes is not None:
                    output = only_in_holes(output, background, state.holes, state.upscale)
        if options.draw_boxes:
            output = draw_face_boxes(output, prepared.detected, state.upscale)
        if options.task == "colorize" and faces:
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
            refusal = realesrgan_refusal(bgr.shape, self.device)
            if refusal is None:
                upsampler = self.models.upsampler(progress=state.clock.download_progress)
            else:
                state.report.adjustments.append(refusal)
        with state.clock.stage("background", "Upscaling the background"):
            prepared.backgrounds[key] = upscaled_background(bgr, state.upscale, upsampler)
        return prepared.backgrounds[key]

    def _paste_masks(self, state: RunState, prepared: PreparedFaces, faces: list[FaceCrop]) -> np.ndarray | None:
        """Soft masks of the restored faces, or None for the plain eroded-square paste.

        Parsed once per image, on the first fidelity's faces: the blurred mask barely moves with w.
        """
        if not state.options.parse_paste:
            return None
        if prepared.paste_masks is not None:
            state.report.reused.append("paste masks")
            return prepared.paste_masks
        with state.clock.stage("load parser", "Loading the face parser"):
            parser = self.models.parser(progress=state.clock.download_progress)
        face_size = [cv2.resize(face, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA) for face in faces]
        with state.clock.stage("parse", "Parsing faces for paste-back"):
            prepared.paste_masks = self._network_stage(lambda _batch: parser.paste_masks(face_size))
        return prepared.paste_masks

    # ---------------------------------------------------------------- running networks

    def _network_stage(self, work: Callable[[int], T]) -> T:
        """work(faces per batch); on a CPU on a thread of its own, so that NNPACK's per-thread workspace and the
        heap it freed go when it ends (`memory.on_own_thread`); out of memory on a GPU frees the device's cache
        and runs work again one face at a time."""
        batch = batch_size_for(self.device)

        def with_retry() -> T:
            try:
                return work(batch)
            except torch.OutOfMemoryError:
                if batch == 1:
                    raise
                self._free_device_memory()
                return work(1)

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
