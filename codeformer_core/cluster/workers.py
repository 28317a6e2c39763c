"""What a Ray Data actor does: build the shared pipeline once, then restore what each batch brings.

Actors only compute: the bytes of a photo in, its PNG's bytes out; a video's frames in, the restored frames out.
Reading inputs and writing outputs is left to the process that runs the job (`job`), so the cluster's nodes need
the engine and its weights but not the job's files. No Ray is imported here: Ray Data constructs these classes in
its actors and calls them with batches (dicts of NumPy arrays, one entry per column).
"""

from typing import Any, NamedTuple

import numpy as np

from ..errors import CodeFormerError, InvalidImageError, WeightsError
from ..images import encode_png, read_image, read_image_array
from ..layouts import Mask
from ..options import RestoreOptions
from ..pipeline import Pipeline, RestoreRequest
from ..settings import Settings

DONE, FAILED, STOP = "done", "failed", "stop"
"""A photo's status: written; refused with a message; a problem with the model files, which every photo would
share, so the job stops."""


class PhotoOutcome(NamedTuple):
    status: str
    message: str = ""
    faces: int = 0
    found: int = 0
    png: bytes = b""


class _PipelineActor:
    """Builds the pipeline as the command line does; its models load on first use and stay for the actor's life."""

    def __init__(
        self,
        settings: Settings,
        options: RestoreOptions,
        device: str,
        mask: Mask | None = None,
    ) -> None:
        self.pipeline = Pipeline.from_settings(settings, device=device)
        self.options = options
        self.mask = mask


class PhotoWorker(_PipelineActor):
    """Columns in: index, data (the file's bytes), error (why it could not be read, else ""). Columns out: index
    and the `PhotoOutcome` fields (faces: restored; found: detected)."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        outcomes = [self._restore(data, error) for data, error in zip(batch["data"], batch["error"])]
        columns = {name: [getattr(outcome, name) for outcome in outcomes] for name in PhotoOutcome._fields}
        return {"index": list(batch["index"]), **columns}

    def _restore(self, data: bytes, read_error: str) -> PhotoOutcome:
        try:
            if read_error:
                raise InvalidImageError(read_error)
            result = self.pipeline.run(RestoreRequest(read_image(data), self.options, self.mask))
            png = encode_png(result.image)
        except WeightsError as error:
            return PhotoOutcome(STOP, str(error))
        except CodeFormerError as error:
            return PhotoOutcome(FAILED, str(error))
        return PhotoOutcome(DONE, "", result.report.faces_restored, len(result.report.faces), png)


class FrameWorker(_PipelineActor):
    """Columns in: index, frame (H x W x 3 uint8 RGB, as the video path decodes it). Columns out: index, frame
    (the restored frame, BGR, as the video path encodes it), faces (restored), found (detected)."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        frames = [read_image_array(rgb, channel_order="RGB") for rgb in batch["frame"]]
        restored = self.pipeline.run_many([RestoreRequest(frame, self.options) for frame in frames])
        return {
            "index": batch["index"],
            "frame": np.stack([result.image for result in restored]),
            "faces": [result.report.faces_restored for result in restored],
            "found": [len(result.report.faces) for result in restored],
        }
