"""What happened to one image: faces found, what was restored, timings, adjustments.

The CLI writes it as JSON; the app shows `summary()`.
"""

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .layouts import BGRImage, FaceCrop


@dataclass
class FaceReport:
    """One detected face. box is x1, y1, x2, y2 and landmarks are five (x, y) points, in input-image pixels.

    fidelity: the w the face was restored at; None (JSON null, with restored false) when it kept its original
    pixels.
    """

    box: list[float]
    landmarks: list[list[float]]
    score: float
    restored: bool = True
    fidelity: float | None = None


@dataclass
class Report:
    task: str
    fidelity: float
    input_size: tuple[int, int]  # width, height
    output_size: tuple[int, int] = (0, 0)
    faces: list[FaceReport] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # stage name -> seconds
    adjustments: list[str] = field(default_factory=list)  # changes we made to the request, e.g. a lowered upscale
    notices: list[str] = field(default_factory=list)  # things the user should know, e.g. "no face found"
    reused: list[str] = field(default_factory=list)  # stages served from the cache of an earlier run
    precision: str = "exact float32"  # e.g. "fast mode (codes in float32, decoder in bf16)"
    cpu_kernels: str | None = None  # on a CPU, which convolution kernels ran and how they were chosen

    @property
    def faces_restored(self) -> int:
        return sum(face.restored for face in self.faces)

    @property
    def total_seconds(self) -> float:
        return float(sum(self.timings.values()))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["faces_restored"] = self.faces_restored
        data["total_seconds"] = round(self.total_seconds, 3)
        return data

    def summary(self) -> str:
        """A few lines for a person: faces, time, anything adjusted or reused."""
        lines = [
            f"{self.task}: {self.faces_restored} of {len(self.faces)} face(s) processed in {self.total_seconds:.1f} s"
            f" ({self.input_size[0]}x{self.input_size[1]} -> {self.output_size[0]}x{self.output_size[1]})."
        ]
        if any(not face.restored or face.fidelity != self.fidelity for face in self.faces):
            lines.append("Face by face: " + "; ".join(
                f"{index}: " + (f"w={face.fidelity:g}" if face.restored else "kept original")
                for index, face in enumerate(self.faces)
            ) + ".")
        if self.reused:
            lines.append("Reused from the previous run: " + ", ".join(self.reused) + ".")
        lines.extend(self.adjustments)
        lines.extend(self.notices)
        lines.append(f"Ran in {self.precision}" + (f", {self.cpu_kernels}" if self.cpu_kernels else "") + ".")
        return "\n".join(lines)


def face_report(box: np.ndarray, landmarks: np.ndarray, score: float) -> FaceReport:
    return FaceReport(
        box=[round(float(v), 1) for v in box],
        landmarks=[[round(float(x), 1), round(float(y), 1)] for x, y in landmarks],
        score=round(float(score), 4),
    )


@dataclass
class RestoreResult:
    """image: the output, BGR uint8 (BGRA when the input had an alpha channel).
    faces: one per detected face, in detection order, BGR uint8: the processed face (512x512, or larger after face
      upsampling), or for a face left out its aligned crop from the input."""

    image: BGRImage
    faces: list[FaceCrop]
    report: Report


@dataclass
class FidelitySweep:
    """One face restored at several w, side by side. faces[i] (BGR uint8, as `RestoreResult.faces` holds it) is
    the face at fidelities[i]; timings and reused as in `Report`."""

    face_index: int
    fidelities: tuple[float, ...]
    faces: list[FaceCrop]
    timings: dict[str, float] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One short line: the face, the w's and the time."""
        ws = ", ".join(f"{w:g}" for w in self.fidelities)
        return f"Face {self.face_index} at w = {ws} in {sum(self.timings.values()):.1f} s."
