"""Per-call options, validated once where they are made, and the checks every entry point shares."""

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Literal

from .errors import InvalidOptionError
from .layouts import TASKS, Task

Detector = Literal["retinaface_resnet50", "retinaface_mobile0.25", "dlib"]
DETECTORS: tuple[Detector, ...] = ("retinaface_resnet50", "retinaface_mobile0.25", "dlib")
Background = Literal["none", "realesrgan"]
BACKGROUNDS: tuple[Background, ...] = ("none", "realesrgan")
MAX_UPSCALE = 4


def check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    """InvalidOptionError naming `name`, the choices and the value when `value` is not one of `choices`."""
    if value not in choices:
        raise InvalidOptionError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def check_fidelity(value: object, name: str = "fidelity") -> float:
    """`value` as a float when it is a number in [0, 1]; InvalidOptionError otherwise."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= float(value) <= 1.0:
        raise InvalidOptionError(f"{name} must be a number between 0 and 1; got {value!r}")
    return float(value)


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
        check_choice("task", self.task, TASKS)
        check_fidelity(self.fidelity)
        if not isinstance(self.upscale, int) or isinstance(self.upscale, bool) or not 1 <= self.upscale <= MAX_UPSCALE:
            raise InvalidOptionError(f"upscale must be a whole number from 1 to {MAX_UPSCALE}; got {self.upscale!r}")
        check_choice("detector", self.detector, DETECTORS)
        check_choice("background", self.background, BACKGROUNDS)

    @property
    def effective_fidelity(self) -> float:
        """The w the network actually runs at for this task."""
        return {"restore": float(self.fidelity), "colorize": 0.0, "inpaint": 1.0}[self.task]

    @property
    def adain(self) -> bool:
        """The inpainting model was trained without AdaIN; the other two with it."""
        return self.task != "inpaint"
