"""One request to the engine: an image and what to do with it, as the page, the API, the CLI, batches, videos and the
ZeroGPU wrapper hand it to `Pipeline.run` and `Pipeline.fidelity_sweep`."""

from dataclasses import dataclass, field

from ..faces.detection import DetectedFace
from ..images import LoadedImage
from ..layouts import Mask
from ..options import RestoreOptions


@dataclass(frozen=True)
class RestoreRequest:
    """image: the decoded input. options: the task, fidelity and the rest, face-by-face choices included (they
    name faces by their index in the report's face list).
    mask: for inpaint, H x W with values > 0.5 at the holes; None: the image's pure-white pixels are the holes (the
      official convention).
    faces: faces in input-image pixels (as a report lists them), used instead of running the detector; the usual
      filters (tiny faces, the centre face, the face limit) still apply. None: detect them.
    """

    image: LoadedImage
    options: RestoreOptions = field(default_factory=RestoreOptions)
    mask: Mask | None = None
    faces: tuple[DetectedFace, ...] | None = None

    def __post_init__(self) -> None:
        if self.faces is not None:  # a list from a caller: kept as a tuple, so the request stays unchangeable
            object.__setattr__(self, "faces", tuple(self.faces))
