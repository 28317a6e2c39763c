"""The shared pipeline: image in -> faces found -> faces aligned -> network -> faces pasted back -> image out.

One `Pipeline` per process. It loads each model once, on first use, and keeps it on its device. Everything a run
computes that does not depend on the fidelity w (detections, aligned crops, the network's encode step, the paste
masks, the upscaled background) is kept for the last few images, so moving the fidelity slider on the same image
re-runs only the decoder and the paste-back.
"""

import threading
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch

from .alignment import FFHQ_TEMPLATE_512, align_faces, estimate_alignment, warp_mask_to_faces
from .detection import DetectedFace, select_faces
from .device import resolve_device
from .errors import DeviceError, InvalidImageError
from .face_network import chunk_size_for, decode_faces, encode_faces
from .gray import gray_like_input, to_gray
from .images import LoadedImage, enlarge_small, finish_output, fit_working_size
from .layouts import BGRImage, FaceCrop, Mask
from .models import Models
from .memory import on_own_thread
from .options import RestoreOptions
from .paste import draw_face_boxes, paste_faces
from .prepared import PreparedCache, PreparedFaces, prepared_key
from .report import Report, RestoreResult, face_report
from .stages import StageClock
from .weights import WeightStore
from .weights_registry import files_needed

Progress = Callable[[float, str], None]
"""progress(fraction in [0, 1], message) — the app turns it into a progress bar."""

FACE_SIZE = 512
MAX_OUTPUT_SIDE = 8192  # the upscale factor is lowered so the output stays below this
MAX_CPU_BACKGROUND_PIXELS = 2_000_000  # Real-ESRGAN costs ~10 s per 400 px tile on a 2-core CPU
DEFAULT_MAX_FACES = 40


class Pipeline:
    """Restores, colorizes or inpaints faces; safe to call from several threads (runs are serialised)."""

    def __init__(
        self,
        weights: WeightStore | None = None,
        device: str | None = None,
        *,
        max_faces: int = DEFAULT_MAX_FACES,
        cache_images: int = 4,
    ) -> None:
        self.device = resolve_device(device)
        self.weights = weights if weights is not None else WeightStore()
        self.models = Models(self.weights, self.device)
        self.max_faces = max_faces
        self._prepared = PreparedCache(cache_images)
        self._run_lock = threading.Lock()

    def missing_weights(self, options: RestoreOptions) -> list[str]:
        """Files this run would have to download first (no network is touched to find out)."""
        return self.weights.missing_files(_files_for(options))

    def run(
        self,
        image: LoadedImage,
        options: RestoreOptions,
        *,
        mask: Mask | None = None,
        faces: Sequence[DetectedFace] | None = None,
        progress: Progress | None = None,
    ) -> RestoreResult:
        """Process one image. For inpaint, `mask` (H x W, > 0.5 = hole) marks the holes; without it, pure-white
        pixels of the image are the holes (the official convention). `faces`, in input-image pixels (as a report
        lists them), are used instead of running the detector; the usual filters still apply."""
        clock = StageClock(progress)
        report = Report(options.task, options.effective_fidelity, (image.bgr.shape[1], image.bgr.shape[0]))
        report.adjustments.extend(image.notes)
        with self._run_lock:
            try:
                output, restored = self._run(image, options, mask, faces, clock, report)
            except torch.OutOfMemoryError as error:
                self._free_device_memory()
                raise DeviceError(
                    "The device ran out of memory on this image. Try a smaller image, a lower upscale, or --device cpu."
                ) from error
        report.timings = clock.timings
        report.output_size = (output.shape[1], output.shape[0])
        return RestoreResult(image=output, faces=restored, report=report)

    def _run(
        self,
        image: LoadedImage,
        options: RestoreOptions,
        mask: Mask | None,
        given: Sequence[DetectedFace] | None,
        clock: StageClock,
        report: Report,
    ) -> tuple[np.ndarray, list[FaceCrop]]:
        working, scale = fit_working_size(image)
        if options.aligned:
            report.adjustments.extend(note for note in working.notes if note not in image.notes)
            holes = _hole_mask(working, mask, options) if options.task == "inpaint" else None
            return self._run_aligned(working, holes, options, clock, report)
        enlarged_image, enlarged = enlarge_small(working)
        report.adjustments.extend(note for note in enlarged_image.notes if note not in image.notes)
        holes = _hole_mask(enlarged_image, mask, options) if options.task == "inpaint" else None
        scale *= enlarged
        given = None if given is None else [_scaled_face(face, scale) for face in given]
        return self._run_whole(image, working.bgr, enlarged, enlarged_image, scale, holes, given, options, clock,
                               report)

    def _run_aligned(
        self, image: LoadedImage, holes: Mask | None, options: RestoreOptions, clock: StageClock, report: Report
    ) -> tuple[np.ndarray, list[FaceCrop]]:
        bgr = image.bgr
        if bgr.shape[:2] != (FACE_SIZE, FACE_SIZE):
            report.adjustments.append(
                f"The aligned face was {bgr.shape[1]}x{bgr.shape[0]}; it was resized to {FACE_SIZE}x{FACE_SIZE}."
            )
            bgr = cv2.resize(bgr, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_LINEAR)
            if holes is not None:
                holes = cv2.resize(holes, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_NEAREST)
        key = prepared_key(bgr, holes, options)
        prepared = self._prepared.get(key)
        if prepared is None:
            # The whole input is the face, its landmarks where the template puts them.
            whole = DetectedFace(
                box=np.array([0, 0, FACE_SIZE, FACE_SIZE], np.float32),
                landmarks=np.asarray(FFHQ_TEMPLATE_512, np.float32),
                score=1.0,
            )
            prepared = self._prepare(key, [whole], [], [bgr], [holes] if holes is not None else None, options, clock)
        else:
            report.reused.append("the encoded face")
        faces = self._decode(prepared, options, image.is_gray, clock, upscale=1)
        report.faces = [face_report(d.box, d.landmarks, d.score) for d in prepared.detected]
        return finish_output(faces[0], image), faces

    def _run_whole(
        self,
        original: LoadedImage,
        detection_bgr: BGRImage,
        enlarged: float,
        image: LoadedImage,
        scale: float,
        holes: Mask | None,
        given: list[DetectedFace] | None,
        options: RestoreOptions,
        clock: StageClock,
        report: Report,
    ) -> tuple[np.ndarray, list[FaceCrop]]:
        """`image` is `original` at the working size, `scale` times its size; `detection_bgr` is it before the
        enlargement of a small photo (by `enlarged`), which adds no detail for a detector, only time."""
        upscale = _plan_upscale(image.bgr, options, report)
        key = prepared_key(image.bgr, holes, options, given)
        prepared = self._prepared.get(key)
        if prepared is None:
            detected = self._detect(detection_bgr, enlarged, image.bgr.shape, given, options, clock, report)
            with clock.stage("align", "Aligning faces"):
                affines = [estimate_alignment(face.landmarks) for face in detected]
                crops = align_faces(image.bgr, affines)
                face_holes = warp_mask_to_faces(holes, affines) if holes is not None else None
            prepared = self._prepare(key, detected, affines, crops, face_holes, options, clock)
        else:
            report.reused.append("face detection, alignment and encoding")
        report.faces = [face_report(d.box / scale, d.landmarks / scale, d.score) for d in prepared.detected]
        if not prepared.detected:
            report.notices.append("No face was found in this image; it was only upscaled.")
        faces = self._decode(prepared, options, image.is_gray, clock, upscale)

        background = self._background(prepared, image.bgr, upscale, options, clock, report)
        if faces:
            masks = self._paste_masks(prepared, faces, options, clock, report)
            with clock.stage("paste", "Pasting faces back"):
                output = paste_faces(background, faces, prepared.affines, masks, upscale)
                if holes is not None:
                    output = _only_in_holes(output, background, holes, upscale)
        else:
            output = background
        if options.draw_boxes:
            output = draw_face_boxes(output, prepared.detected, upscale)
        if options.task == "colorize" and faces:
            report.notices.append("Only the faces were colorized; the rest of the photo keeps its colours.")
        return finish_output(output, original), faces

    def _detect(
        self,
        bgr: BGRImage,
        enlarged: float,
        working_shape: tuple[int, ...],
        given: list[DetectedFace] | None,
        options: RestoreOptions,
        clock: StageClock,
        report: Report,
    ) -> list[DetectedFace]:
        """The faces to process, in the pixels of the working image (`working_shape`): found in `bgr`, the same
        picture before its enlargement by `enlarged`, unless `given`."""
        if given is None:
            with clock.stage("load detector", "Loading the face detector"):
                detector = self.models.detector(options.detector, progress=clock.download_progress)
        with clock.stage("detect", "Finding faces" if given is None else "Taking the faces given"):
            if given is None:
                found = [_scaled_face(face, enlarged) for face in detector.detect(bgr)]
            else:
                found = given
            detected = select_faces(
                found, working_shape, only_center_face=options.only_center_face, max_faces=self.max_faces
            )
        if len(found) > len(detected) and not options.only_center_face:
            report.adjustments.append(
                f"{len(found)} faces were found; the {len(detected)} largest were processed (limit {self.max_faces})."
            )
        return detected

    def _prepare(
        self,
        key: str,
        detected: list[DetectedFace],
        affines: list[np.ndarray],
        crops: list[FaceCrop],
        face_holes: list[Mask] | None,
        options: RestoreOptions,
        clock: StageClock,
    ) -> PreparedFaces:
        """Everything before the decoder, kept in the cache under `key`."""
        if options.task == "colorize":
            crops = [to_gray(crop) for crop in crops]
        if face_holes is not None:
            crops = [_whiten_holes(crop, hole) for crop, hole in zip(crops, face_holes)]
        encoded = []
        if crops:
            with clock.stage("load network", "Loading CodeFormer"):
                net = self.models.codeformer(options.task, progress=clock.download_progress)
            with clock.stage("encode", f"Encoding {len(crops)} face(s)"):
                encoded = on_own_thread(lambda: self._with_smaller_chunks(
                    lambda chunk: encode_faces(net, crops, adain=options.adain, fast=options.fast, chunk=chunk)
                ))
        prepared = PreparedFaces(detected, affines, crops, face_holes, encoded)
        self._prepared.put(key, prepared)
        return prepared

    def _decode(
        self,
        prepared: PreparedFaces,
        options: RestoreOptions,
        is_gray: bool,
        clock: StageClock,
        upscale: int,
    ) -> list[FaceCrop]:
        """The faces at this run's fidelity, as they will be pasted (upsampled by `upscale` if asked)."""
        if not prepared.crops:
            return []
        net = self.models.codeformer(options.task)
        w = options.effective_fidelity
        with clock.stage("decode", f"Decoding {len(prepared.crops)} face(s) at fidelity {w:g}"):
            faces = on_own_thread(lambda: decode_faces(net, prepared.encoded, fidelity=w, fast=options.fast))
        if prepared.face_holes is not None:
            faces = [
                np.where(hole[..., None] > 0.5, out, crop)
                for out, crop, hole in zip(faces, prepared.crops, prepared.face_holes)
            ]
        if is_gray and options.task == "restore":
            faces = [gray_like_input(face, crop) for face, crop in zip(faces, prepared.crops)]
        elif is_gray and options.task == "inpaint" and not options.aligned:
            # Our whole-photo inpaint keeps a grey photo grey; the official inpaint script (aligned faces only)
            # leaves the network's colours, and the crop's white holes would skew the tint matching.
            faces = [to_gray(face) for face in faces]
        if options.face_upsample and upscale > 1:
            upsampler = self.models.upsampler(progress=clock.download_progress)
            with clock.stage("face upsample", "Upsampling faces"):
                faces = [upsampler.upsample(face, outscale=upscale) for face in faces]
        return faces

    def _paste_masks(
        self, prepared: PreparedFaces, faces: list[FaceCrop], options: RestoreOptions, clock: StageClock,
        report: Report,
    ) -> np.ndarray | None:
        """Soft masks of the restored faces, or None for the plain eroded-square paste.

        Parsed once per image, on the first fidelity's faces: the blurred mask barely moves with w.
        """
        if not options.parse_paste:
            return None
        if prepared.paste_masks is not None:
            report.reused.append("paste masks")
            return prepared.paste_masks
        with clock.stage("load parser", "Loading the face parser"):
            parser = self.models.parser(progress=clock.download_progress)
        with clock.stage("parse", "Parsing faces for paste-back"):
            prepared.paste_masks = on_own_thread(lambda: parser.paste_masks(
                [cv2.resize(face, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA) for face in faces]
            ))
        return prepared.paste_masks

    def _background(
        self, prepared: PreparedFaces, bgr: BGRImage, upscale: int, options: RestoreOptions, clock: StageClock,
        report: Report,
    ) -> BGRImage:
        key = (upscale, options.background)
        if key in prepared.backgrounds:
            report.reused.append("upscaled background")
            return prepared.backgrounds[key]
        use_realesrgan = options.background == "realesrgan" and upscale > 1
        if use_realesrgan and self.device.type == "cpu" and bgr.shape[0] * bgr.shape[1] > MAX_CPU_BACKGROUND_PIXELS:
            use_realesrgan = False
            report.adjustments.append(
                f"Background enhancement skipped: {bgr.shape[1]}x{bgr.shape[0]} is above "
                f"{MAX_CPU_BACKGROUND_PIXELS / 1e6:g} megapixels, which would take minutes on a CPU."
            )
        with clock.stage("background", "Upscaling the background"):
            if use_realesrgan:
                upsampler = self.models.upsampler(progress=clock.download_progress)
                background = upsampler.upsample(bgr, outscale=upscale)
            elif upscale > 1:
                # Bilinear, as the official paste-back resizes the input when no upsampler is used.
                background = cv2.resize(bgr, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_LINEAR)
            else:
                background = bgr
        prepared.backgrounds[key] = background
        return background

    def _with_smaller_chunks(self, work: Callable[[int], list]) -> list:
        """Run `work(chunk_size)`; on a GPU out-of-memory, free the cache and retry one face at a time."""
        chunk = chunk_size_for(self.device)
        try:
            return work(chunk)
        except torch.OutOfMemoryError:
            if chunk == 1:
                raise
            self._free_device_memory()
            return work(1)

    def _free_device_memory(self) -> None:
        self._prepared.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _files_for(options: RestoreOptions) -> list[str]:
    return files_needed(
        options.task,
        detector=options.detector,
        parse_paste=options.parse_paste,
        background=options.background,
        face_upsample=options.face_upsample,
        aligned=options.aligned,
    )


def _plan_upscale(bgr: BGRImage, options: RestoreOptions, report: Report) -> int:
    upscale = options.upscale
    long_side = max(bgr.shape[:2])
    while upscale > 1 and long_side * upscale > MAX_OUTPUT_SIDE:
        upscale -= 1
    if upscale != options.upscale:
        report.adjustments.append(
            f"Upscale lowered from {options.upscale} to {upscale}: the output would exceed {MAX_OUTPUT_SIDE} px."
        )
    return upscale


def _hole_mask(image: LoadedImage, mask: Mask | None, options: RestoreOptions) -> Mask:
    """The inpainting holes as a float32 0/1 mask the size of the image."""
    height, width = image.bgr.shape[:2]
    if mask is None:
        return np.all(image.bgr == 255, axis=2).astype(np.float32)
    if mask.ndim != 2:
        raise InvalidImageError(f"The inpainting mask must be a single-channel image; got shape {mask.shape}.")
    if mask.shape != (height, width):
        mask = cv2.resize(mask.astype(np.float32), (width, height), interpolation=cv2.INTER_NEAREST)
    return (mask > 0.5).astype(np.float32)


def _whiten_holes(crop: FaceCrop, hole: Mask) -> FaceCrop:
    """The inpainting network was trained with holes painted pure white."""
    crop = crop.copy()
    crop[hole > 0.5] = 255
    return crop


def _only_in_holes(output: BGRImage, background: BGRImage, holes: Mask, upscale: int) -> BGRImage:
    """Inpaint changes only the masked pixels: everything else is the (upscaled) input."""
    if upscale > 1:
        holes = cv2.resize(holes, (output.shape[1], output.shape[0]), interpolation=cv2.INTER_NEAREST)
    return np.where(holes[..., None] > 0.5, output, background)


def _scaled_face(face: DetectedFace, scale: float) -> DetectedFace:
    """A face given in input pixels, in the pixels of the input resized by `scale`."""
    return DetectedFace(
        box=(np.asarray(face.box, np.float64) * scale).astype(np.float32),
        landmarks=(np.asarray(face.landmarks, np.float64) * scale).astype(np.float32),
        score=face.score,
    )

