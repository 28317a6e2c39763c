"""What one run carries from stage to stage: the request, the image at the size it is worked on, the clock and the
report. `Pipeline.run` makes one per call, so the stages share it instead of passing the same five arguments
along."""

import dataclasses
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..faces.detection import DetectedFace
from ..faces.inpaint import hole_mask
from ..images import LoadedImage, enlarge_small, finish_output, fit_working_size
from ..layouts import FACE_SIZE, BGRImage, FaceCrop, Mask
from ..options import RestoreOptions
from ..report import Report, RestoreResult
from .background import plan_upscale
from .clock import Progress, StageClock
from .request import RestoreRequest


@dataclass
class RunState:
    """One call of `Pipeline.run`.

    image: the input as given. working: the image the faces are found in and pasted into: a large photo reduced,
    a small one enlarged as the official helper does, an aligned face at 512 x 512. scale: working size / input
    size. detection_bgr: the working image before a small photo's enlargement (by `enlarged`), which adds no detail
    for a detector. given: faces given by the caller instead of detection, in working pixels. holes: the
    inpainting holes in working pixels. upscale: output size / working size.
    """

    image: LoadedImage
    options: RestoreOptions
    mask: Mask | None
    given: list[DetectedFace] | None
    clock: StageClock
    report: Report
    working: LoadedImage = field(init=False)
    detection_bgr: BGRImage = field(init=False)
    enlarged: float = 1.0
    scale: float = 1.0
    holes: Mask | None = None
    upscale: int = 1

    @classmethod
    def begin(cls, request: RestoreRequest, progress: Progress | None) -> "RunState":
        image, options = request.image, request.options
        report = Report(options.task, options.effective_fidelity, image.size)
        report.adjustments.extend(image.notes)
        given = None if request.faces is None else list(request.faces)
        return cls(image, options, request.mask, given, StageClock(progress), report)

    def fit_working_image(self) -> None:
        """Stage 1: the working image and the holes in it; every change made to get there goes in the report."""
        working, self.scale = fit_working_size(self.image)
        holes = hole_mask(working.bgr, self.mask) if self.options.task == "inpaint" else None
        if self.options.aligned:
            # The crop is the face: nothing to detect, and the report keeps crop pixels.
            working, self.scale, self.given = self._as_aligned_face(working), 1.0, None
        else:
            self.detection_bgr = working.bgr
            working, self.enlarged = enlarge_small(working)
            self.scale *= self.enlarged
            self.upscale, lowered = plan_upscale(working.bgr.shape, self.options.upscale)
            if lowered:
                self.report.adjustments.append(lowered)
        self.working = working
        self.report.adjustments.extend(note for note in working.notes if note not in self.image.notes)
        if holes is not None and holes.shape != working.bgr.shape[:2]:
            holes = cv2.resize(holes, working.size, interpolation=cv2.INTER_NEAREST)
        self.holes = holes
        if self.given is not None:
            self.given = [scaled_face(face, self.scale) for face in self.given]

    def result(self, output: np.ndarray, faces: list[FaceCrop]) -> RestoreResult:
        """The output with the input's alpha, and the report completed."""
        image = finish_output(output, self.image)
        self.report.timings = self.clock.timings
        self.report.output_size = (image.shape[1], image.shape[0])
        return RestoreResult(image=image, faces=faces, report=self.report)

    def _as_aligned_face(self, working: LoadedImage) -> LoadedImage:
        bgr = working.bgr
        if bgr.shape[:2] == (FACE_SIZE, FACE_SIZE):
            return working
        self.report.adjustments.append(
            f"The aligned face was {bgr.shape[1]}x{bgr.shape[0]}; it was resized to {FACE_SIZE}x{FACE_SIZE}."
        )
        resized = cv2.resize(bgr, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_LINEAR)
        return dataclasses.replace(working, bgr=resized)


def scaled_face(face: DetectedFace, scale: float) -> DetectedFace:
    """A face in the pixels of its image resized by `scale`."""
    return DetectedFace(
        box=(np.asarray(face.box, np.float64) * scale).astype(np.float32),
        landmarks=(np.asarray(face.landmarks, np.float64) * scale).astype(np.float32),
        score=face.score,
    )
