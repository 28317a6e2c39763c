"""Stage 4 of a run: the restored faces pasted back into the photo, upscaled; the background, the parse masks and
each face's blend are kept for the image's next run, where only the faces' pixels change."""

from collections.abc import Callable

import cv2

from ..faces.inpaint import only_in_holes
from ..faces.paste import FaceBlend, blend_faces, draw_face_boxes, face_blend
from ..layouts import FACE_SIZE, BGRImage, FaceCrop, Mask
from ..network.precision import Precision
from ..options import RestoreOptions
from .background import realesrgan_refusal, upscaled_background
from .cache import PreparedFaces
from .device_runs import DeviceRuns
from .models import Models
from .state import RunState


class PasteStage:
    """models: the face parser and the background upsampler; runs: the device's network runs; precision: what the
    parser runs at for a run's options."""

    def __init__(self, models: Models, runs: DeviceRuns, precision: Callable[[RestoreOptions], Precision]) -> None:
        self.models = models
        self.runs = runs
        self.precision = precision

    def pasted_back(self, state: RunState, prepared: PreparedFaces, restored: dict[int, FaceCrop]) -> BGRImage:
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
        upsampler = None
        if state.options.background == "realesrgan" and state.upscale > 1:
            refusal = realesrgan_refusal(state.detection_bgr.shape, self.models.device)
            if refusal is None:
                upsampler = self.models.upsampler(progress=state.clock.download_progress)
            else:
                state.report.adjustments.append(refusal)
        with state.clock.stage("background", "Upscaling the background"):
            prepared.backgrounds[key] = upscaled_background(
                state.working.bgr, state.upscale, upsampler, state.detection_bgr
            )
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
            precision = self.precision(state.options)
            with state.clock.stage("parse", "Parsing faces for paste-back"):
                masks = self.runs.run(lambda batch: parser.paste_masks(face_size, precision, batch))
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
