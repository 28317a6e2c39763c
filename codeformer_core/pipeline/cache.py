"""What a run keeps so that the next fidelity on the same image redoes only the decoder and the paste-back."""

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from ..faces.detection import DetectedFace
from ..layouts import Affine, BGRImage, FaceCrop, Mask
from ..network import EncodedFaces
from ..options import RestoreOptions


@dataclass
class PreparedFaces:
    """The w-independent results for one image and one set of w-independent options.

    crops are the network's inputs (grey for colorize, holes painted white for inpaint); paste_masks (N x 512 x 512)
    are filled on the first paste-back; backgrounds maps (upscale, background upsampler) to the upscaled image.
    """

    detected: list[DetectedFace]
    affines: list[Affine]
    crops: list[FaceCrop]
    face_holes: list[Mask] | None
    encoded: list[EncodedFaces]
    paste_masks: np.ndarray | None = None
    backgrounds: dict[tuple[int, str], BGRImage] = field(default_factory=dict)


def prepared_key(
    bgr: BGRImage, holes: Mask | None, options: RestoreOptions, given: list[DetectedFace] | None = None
) -> str:
    """Same pixels, same mask, same faces given (if any) and same w-independent options give the same key."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(np.ascontiguousarray(bgr).data)
    digest.update(str(bgr.shape).encode())
    if holes is not None:
        digest.update(np.packbits(holes > 0.5).data)
    if given is not None:
        digest.update(f"{len(given)} faces given".encode())
        for face in given:
            digest.update(np.ascontiguousarray(face.landmarks, np.float32).data)
    settings = (options.task, options.aligned, options.detector, options.only_center_face, options.fast,
                options.parse_paste)
    digest.update(repr(settings).encode())
    return digest.hexdigest()


class PreparedCache:
    """A small LRU of PreparedFaces; encoded faces hold ~60 MB each, so only the last few images are kept."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, PreparedFaces] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> PreparedFaces | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: str, entry: PreparedFaces) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
