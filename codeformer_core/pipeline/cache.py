"""What a run keeps so that the next fidelity on the same image redoes only the decoder and the paste-back, and a
face left out, put back or given its own w redoes only the paste-back and that face's decoder."""

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np

from ..faces.detection import DetectedFace
from ..faces.paste import FaceBlend
from ..layouts import Affine, BGRImage, FaceCrop, Mask
from ..network import EncodedFaces
from ..options import RestoreOptions

FINISHED_FACES_BYTES = 64 * 2**20
"""Finished faces kept per image beyond the last render's: ~85 faces at 512 px, 5 at 2048 px (face upsampling x4)."""

FinishedKey = tuple[int, float, int]
"""(face index, w, face upsampling factor): what a finished face depends on, given its image's prepared faces."""


class FinishedFaces:
    """Faces as a run pastes them (decoded at a w, then grey-matched, hole-kept and upsampled as the run asks), so
    a face whose w did not change is not decoded again.

    Bounded: least recently used faces go once the faces not in the last render hold more than
    FINISHED_FACES_BYTES; the last render's faces always stay, so leaving a face out or putting it back never
    decodes.
    """

    def __init__(self, budget_bytes: int = FINISHED_FACES_BYTES) -> None:
        self._budget = budget_bytes
        self._faces: OrderedDict[FinishedKey, FaceCrop] = OrderedDict()

    def get(self, key: FinishedKey) -> FaceCrop | None:
        face = self._faces.get(key)
        if face is not None:
            self._faces.move_to_end(key)
        return face

    def put(self, key: FinishedKey, face: FaceCrop) -> None:
        self._faces[key] = face
        self._faces.move_to_end(key)

    def trim(self, in_use: Collection[FinishedKey]) -> None:
        """Drop the least recently used faces outside `in_use` until those left outside it fit the budget."""
        spare = [key for key in self._faces if key not in in_use]
        held = sum(self._faces[key].nbytes for key in spare)
        for key in spare:
            if held <= self._budget:
                break
            held -= self._faces.pop(key).nbytes

    def __len__(self) -> int:
        return len(self._faces)


@dataclass
class PreparedFaces:
    """The w-independent results for one image and one set of w-independent options.

    crops are the aligned faces cut from the working image (the network's input before the task's own changes:
    grey for colorize, holes painted white for inpaint). encoded holds the network's w-independent half of the
    faces encoded so far, as (face indices, their encoding) per batch: a face is encoded the first time a run
    restores it. paste_masks (face index -> 512 x 512) are parsed the first time a face is pasted, on the face as
    restored then (at its w in that run), and reused at every later w: the blurred mask barely moves with w.
    backgrounds maps (upscale, background upsampler) to the upscaled image, and blends (face index, upscale, face
    side) to the face's blend into the output (its region, square and weight; None for a face outside it), made
    the first time the face is pasted so.
    """

    detected: list[DetectedFace]
    affines: list[Affine]
    crops: list[FaceCrop]
    face_holes: list[Mask] | None
    encoded: list[tuple[tuple[int, ...], EncodedFaces]] = field(default_factory=list)
    paste_masks: dict[int, Mask] = field(default_factory=dict)
    backgrounds: dict[tuple[int, str], BGRImage] = field(default_factory=dict)
    blends: dict[tuple[int, int, int], FaceBlend | None] = field(default_factory=dict)
    finished: FinishedFaces = field(default_factory=FinishedFaces)

    @property
    def encoded_indices(self) -> set[int]:
        return {index for held, _ in self.encoded for index in held}

    def encoded_faces(self, indices: Collection[int]) -> tuple[list[int], list[EncodedFaces]]:
        """The encodings of the faces at `indices`, kept in the batches they were encoded in, and the face index of
        each encoding in the order those batches hold them."""
        wanted = set(indices)
        order, parts = [], []
        for held, part in self.encoded:
            positions = [position for position, index in enumerate(held) if index in wanted]
            if positions:
                order.extend(held[position] for position in positions)
                parts.append(part if len(positions) == len(held) else part.select(positions))
        return order, parts


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
    settings = (options.task, options.aligned, options.detector, options.only_center_face, options.exact,
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
