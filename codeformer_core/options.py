"""Per-call options, validated once where they are made."""

from dataclasses import dataclass
from typing import Literal

from .errors import InvalidOptionError
from .layouts import TASKS, Task

Detector = Literal["retinaface_resnet50", "retinaface_mobile0.25", "dlib"]
DETECTORS: tuple[Detector, ...] = ("retinaface_resnet50", "retinaface_mobile0.25", "dlib")
Background = Literal["none", "realesrgan"]
BACKGROUNDS: tuple[Background, ...] = ("none", "realesrgan")
MAX_UPSCALE = 4


@dataclass(frozen=True)
class RestoreOptions:
    """What to do with one image.

    fidelity: w in [0, 1]; 0 favours quality (the codebook's face), 1 favours fidelity to the input.
      Only the restore task reads it: colorize always runs at w=0 and inpaint at w=1, as the paper's models do.
    upscale: final size factor of the whole image, 1-4 (ignored for aligned faces).
    aligned: the input is already a 512x512 face aligned to the FFHQ template; skip detection and paste-back.
    fast: reduced precision where the hardware has it (fp16 on CUDA, bf16 on CPUs with native bf16, float32
      elsewhere); close to, but not bit-equal with, float32.
    """

    task: Task = "restore"
    fidelity: float = 0.5
    upscale: int = 2
    aligned: bool = False
    background: Background = "none"
    face_upsample: bool = False
    detector: Detector = "retinaface_resnet50"
    only_center_face: bool = False
    draw_boxes: bool = False
    parse_paste: bool = True
    fast: bool = False

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise InvalidOptionError(f"task must be one of {', '.join(TASKS)}; got {self.task!r}")
        if not isinstance(self.fidelity, (int, float)) or not 0.0 <= float(self.fidelity) <= 1.0:
            raise InvalidOptionError(f"fidelity must be between 0 and 1; got {self.fidelity!r}")
        if not isinstance(self.upscale, int) or isinstance(self.upscale, bool) or not 1 <= self.upscale <= MAX_UPSCALE:
            raise InvalidOptionError(f"upscale must be a whole number from 1 to {MAX_UPSCALE}; got {self.upscale!r}")
        if self.detector not in DETECTORS:
            raise InvalidOptionError(f"detector must be one of {', '.join(DETECTORS)}; got {self.detector!r}")
        if self.background not in BACKGROUNDS:
            raise InvalidOptionError(f"background must be one of {', '.join(BACKGROUNDS)}; got {self.background!r}")

    @property
    def effective_fidelity(self) -> float:
        """The w the network actually runs at for this task."""
        return {"restore": float(self.fidelity), "colorize": 0.0, "inpaint": 1.0}[self.task]

    @property
    def adain(self) -> bool:
        """The inpainting model was trained without AdaIN; the other two with it."""
        return self.task != "inpaint"
