"""Per-call options, validated once where they are made (with the checks in `checks.py`)."""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Literal

from .checks import check_choice, check_face_index, check_fidelity
from .errors import InvalidOptionError
from .layouts import TASKS, Task, task_adain, task_fidelity

Detector = Literal["retinaface_resnet50", "retinaface_mobile0.25", "dlib"]
DETECTORS: tuple[Detector, ...] = ("retinaface_resnet50", "retinaface_mobile0.25", "dlib")
Background = Literal["none", "realesrgan"]
BACKGROUNDS: tuple[Background, ...] = ("none", "realesrgan")
MAX_UPSCALE = 4

FaceFidelities = tuple[tuple[int, float], ...]
"""(face index, w) pairs, sorted by index: the hashable form of a per-face fidelity mapping."""


def parse_face_indices(text: str, name: str = "faces") -> tuple[int, ...]:
    """"0, 1,3" -> (0, 1, 3); "" -> (). InvalidOptionError naming `name` and the bad item otherwise."""
    return tuple(_face_index(item, name) for item in _items(text))


def parse_face_fidelities(text: str, name: str = "face fidelities") -> FaceFidelities:
    """"1=0.8, 3=0.2" -> ((1, 0.8), (3, 0.2)); "" -> (). InvalidOptionError naming `name` and the bad item."""
    pairs = []
    for item in _items(text):
        index, equals, value = item.partition("=")
        if not equals:
            raise InvalidOptionError(f"{name}: expected FACE=W such as 1=0.8; got {item!r}")
        try:
            w = float(value)
        except ValueError:
            raise InvalidOptionError(f"{name}: the w in {item!r} is not a number") from None
        pairs.append((_face_index(index, name), w))
    return tuple(pairs)


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _face_index(text: str, name: str) -> int:
    if not text.strip().isdecimal():  # isdigit would pass '²', which int() refuses
        raise InvalidOptionError(f"{name}: a face is given by its index in the report (0, 1, ...); got {text!r}")
    return int(text)


@dataclass(frozen=True)
class RestoreOptions:
    """What to do with one image.

    fidelity: w in [0, 1]; 0 favours quality (the codebook's face), 1 favours fidelity to the input.
      Only the restore task reads it: colorize always runs at w=0 and inpaint at w=1, as the paper's models do.
    upscale: final size factor of the whole image, 1-4 (ignored for aligned faces).
    aligned: the input is already a 512x512 face aligned to the FFHQ template; skip detection and paste-back.
    exact: float32 through the whole network, within the official code's golden bounds (what the golden tests and the
      equivalence harness compare). Otherwise fast mode: the encoder and the transformer still run float32, so a
      face gets exactly float32's code indices, and only the decoder and the face parser run at the deployment's
      reduced precision (bf16 where the device computes it natively; float32, the same as exact, elsewhere).

    Face by face, each face named by its index in the report's face list (stable for one image and detector):
    only_faces: restore only these faces; the others keep their original pixels. None: every face.
    skip_faces: faces that keep their original pixels (applied after only_faces).
    face_fidelities: (index, w) pairs overriding `fidelity` for those faces; restore only. A mapping or pairs
      are accepted and kept as pairs sorted by index, like the index lists, so equal choices compare equal.
    An index the image does not have is refused when the image's faces are known (`face_fidelity_plan`).
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
    exact: bool = False
    only_faces: tuple[int, ...] | None = None
    skip_faces: tuple[int, ...] = ()
    face_fidelities: FaceFidelities = ()

    def __post_init__(self) -> None:
        check_choice("task", self.task, TASKS)
        check_fidelity(self.fidelity)
        if not isinstance(self.upscale, int) or isinstance(self.upscale, bool) or not 1 <= self.upscale <= MAX_UPSCALE:
            raise InvalidOptionError(f"upscale must be a whole number from 1 to {MAX_UPSCALE}; got {self.upscale!r}")
        check_choice("detector", self.detector, DETECTORS)
        check_choice("background", self.background, BACKGROUNDS)
        if self.only_faces is not None:
            object.__setattr__(self, "only_faces", _index_tuple(self.only_faces, "only_faces"))
        object.__setattr__(self, "skip_faces", _index_tuple(self.skip_faces, "skip_faces"))
        object.__setattr__(self, "face_fidelities", _fidelity_pairs(self.face_fidelities))
        if self.face_fidelities and self.task != "restore":
            raise InvalidOptionError(
                f"Per-face fidelities apply to restore only: {self.task} always runs at w={self.effective_fidelity:g}."
            )

    @property
    def chooses_faces(self) -> bool:
        """Whether any face is left out or given its own w."""
        return self.only_faces is not None or bool(self.skip_faces) or bool(self.face_fidelities)

    def face_fidelity_plan(self, count: int) -> list[float | None]:
        """For each of an image's `count` faces, the w it is restored at, or None where it keeps its original
        pixels. InvalidOptionError when a choice names a face the image does not have."""
        chosen = [*(self.only_faces or ()), *self.skip_faces, *(index for index, _ in self.face_fidelities)]
        for index in chosen:
            check_face_index(index, count)
        own = dict(self.face_fidelities)
        restored = set(range(count) if self.only_faces is None else self.only_faces) - set(self.skip_faces)
        return [own.get(index, self.effective_fidelity) if index in restored else None for index in range(count)]

    @property
    def effective_fidelity(self) -> float:
        """The w the network actually runs at for this task."""
        return task_fidelity(self.task, self.fidelity)

    @property
    def adain(self) -> bool:
        """Whether the task's network runs AdaIN (`task_adain`)."""
        return task_adain(self.task)


def _index_tuple(indices: object, name: str) -> tuple[int, ...]:
    """Face indices as a sorted tuple without repeats; InvalidOptionError for anything but whole numbers >= 0."""
    if isinstance(indices, str | bytes) or not isinstance(indices, Iterable):
        raise InvalidOptionError(f"{name} must be a list of face indices; got {indices!r}")
    values = list(indices)
    if not all(isinstance(i, Integral) and not isinstance(i, bool) and i >= 0 for i in values):
        raise InvalidOptionError(f"{name} must hold face indices (whole numbers from 0); got {values!r}")
    return tuple(sorted({int(i) for i in values}))


def _fidelity_pairs(fidelities: object) -> FaceFidelities:
    """A mapping or (index, w) pairs as pairs sorted by index; one w per face, each in [0, 1]."""
    pairs = list(fidelities.items()) if isinstance(fidelities, Mapping) else list(fidelities)  # type: ignore[arg-type]
    if not all(isinstance(pair, Sequence) and len(pair) == 2 for pair in pairs):
        raise InvalidOptionError(f"face_fidelities must map face indices to w; got {fidelities!r}")
    indices = _index_tuple([index for index, _ in pairs], "face_fidelities")
    if len(indices) != len(pairs):
        raise InvalidOptionError(f"face_fidelities gives one face two values; got {fidelities!r}")
    checked = {int(index): check_fidelity(w, f"the fidelity of face {index}") for index, w in pairs}
    return tuple(sorted(checked.items()))
