"""Finding faces and their five landmarks: RetinaFace (facexlib's network, our loading) or dlib.

Each detector returns every face it finds in input-image pixels; `select_faces` then applies the official
filters (tiny or side-on faces, only the centre face) and our face-count limit.
"""

import importlib.util
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import cv2
import numpy as np
import torch

from ..checks import check_choice
from ..errors import InvalidOptionError
from ..layouts import BGRImage, Box, Landmarks5
from ..weights.checkpoints import load_weights_into, read_state_dict
from ..weights.registry import RETINAFACE_FILES
from .alignment import FFHQ_TEMPLATE_512

RetinaFaceNetwork = Literal["resnet50", "mobile0.25"]

MIN_EYE_DISTANCE = 5.0
"""Faces whose eyes are closer than this many pixels are dropped, as in the official script: they are too small
or too side-on to restore. (The official code measures it with a slip in its indices; we measure the real distance,
as facexlib does.)"""

RETINAFACE_MIN_SIDE = 640
"""The official script enlarges an image whose short side is below 640 px before RetinaFace runs on it."""

RETINAFACE_MAX_SIDE = 1280
"""Our bound (the official has none): a longer side is shrunk to this for detection, and the landmarks are mapped
back to full resolution. Why: RetinaFace's cost grows with the pixels (timings in bench/README.md), while faces
down to ~16 px at this size, the smallest anchor, are still found: ~50 px in a 4000 px photo."""

DLIB_UPSAMPLE = 2.0
"""The official dlib path runs the CNN detector with one pyramid up-step (x2) to find small faces; without it,
most faces of the sample photos are missed. Below DLIB_MAX_PIXELS we take the same step (dlib's own pyramid,
whose boxes an OpenCV x2 resize would move by several pixels); above it, a smaller OpenCV resize."""

DLIB_MAX_PIXELS = 2_000_000
"""Our bound on the image the dlib CNN sees: its cost is linear in pixels (bench/README.md), so an input above
0.5 MP gets a factor below 2 (a 4000x3000 photo is detected at ~1630x1220)."""

# dlib's 5 points (two corners of each eye, then the base of the nose) in the 512 crop the official dlib path aligns
# to (its 1024 template halved); they describe the same FFHQ framing as FFHQ_TEMPLATE_512.
_DLIB_TEMPLATE_512 = np.array(
    [
        [343.38614, 244.31188],
        [293.38614, 246.79703],
        [168.95545, 244.19307],
        [218.97525, 246.75743],
        [256.79208, 339.25248],
    ],
    dtype=np.float32,
)
_RETINAFACE_CONFIDENCE = 0.8
_RETINAFACE_NMS_IOU = 0.4


@dataclass(frozen=True, eq=False)
class DetectedFace:
    """One face in input-image pixels. Compared by identity (its fields are arrays).

    score: the detector's confidence: a probability in [0.8, 1] for RetinaFace, the CNN's margin for dlib (> 0).
    """

    box: Box
    landmarks: Landmarks5
    score: float


class FaceDetector(Protocol):
    def detect(self, image: BGRImage) -> list[DetectedFace]:
        """Every face found in a BGR uint8 image, in the detector's order (most confident first for RetinaFace)."""
        ...


class RetinaFaceDetector:
    """RetinaFace (ResNet-50 or MobileNet-0.25 backbone) with the official thresholds: confidence 0.8, NMS 0.4."""

    def __init__(
        self, network: torch.nn.Module, min_side: int = RETINAFACE_MIN_SIDE, max_side: int = RETINAFACE_MAX_SIDE
    ) -> None:
        self._network = network
        self.min_side = min_side
        self.max_side = max_side
        # facexlib's detect_faces keeps per-call sizes on the module, so two calls must not overlap.
        self._lock = threading.Lock()

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        network: RetinaFaceNetwork = "resnet50",
        device: torch.device | str = "cpu",
        *,
        min_side: int = RETINAFACE_MIN_SIDE,
        max_side: int = RETINAFACE_MAX_SIDE,
    ) -> "RetinaFaceDetector":
        """Build the network and load the official file (its keys carry DataParallel's `module.` prefix).

        Raises InvalidOptionError for an unknown network, CorruptWeightsError for an unreadable file and
        CheckpointMismatchError for a file made for another network.
        """
        check_choice("RetinaFace network", network, tuple(RETINAFACE_FILES))
        from facexlib.detection.retinaface import RetinaFace

        state_dict = {name.removeprefix("module."): tensor for name, tensor in read_state_dict(path).items()}
        device = torch.device(device)
        with warnings.catch_warnings():
            # facexlib asks torchvision for resnet50(pretrained=False): deprecated wording, no download.
            warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
            model = RetinaFace(network_name=network, half=False, phase="test", device=device)
        load_weights_into(model, state_dict, path, f"RetinaFace {network} detector", RETINAFACE_FILES[network])
        return cls(model.eval(), min_side=min_side, max_side=max_side)

    def detection_scale(self, height: int, width: int) -> float:
        """The factor the image is resized by before the network sees it."""
        scale = max(1.0, self.min_side / min(height, width))
        return min(scale, self.max_side / max(height, width))

    def detect(self, image: BGRImage) -> list[DetectedFace]:
        height, width = image.shape[:2]
        scale = self.detection_scale(height, width)
        resized = _resize(image, scale)
        with self._lock, torch.inference_mode():
            rows = self._network.detect_faces(
                resized, conf_threshold=_RETINAFACE_CONFIDENCE, nms_threshold=_RETINAFACE_NMS_IOU, use_origin_size=True
            )
        # Map back with the per-axis ratio the rounding of the resized size actually gave.
        ratio = np.array([width / resized.shape[1], height / resized.shape[0]], dtype=np.float32)
        return [
            DetectedFace(
                box=(row[0:4].reshape(2, 2) * ratio).reshape(4),
                landmarks=row[5:15].reshape(5, 2) * ratio,
                score=float(row[4]),
            )
            for row in np.asarray(rows, dtype=np.float32)
        ]


class DlibDetector:
    """dlib's CNN face detector (mmod) and 5-point shape predictor, the official `dlib` option.

    Both models ship in the `face_recognition_models` package, so nothing is downloaded. dlib's five points are two
    corners per eye and the base of the nose; like the official code we align them to its dlib template, and
    report as landmarks where that alignment puts the FFHQ template's eyes, nose tip and mouth corners (so
    `estimate_alignment` on them gives the official dlib crop).
    """

    def __init__(self) -> None:
        dlib = _import_dlib()
        models = _face_recognition_models_dir()
        self._detector = dlib.cnn_face_detection_model_v1(str(models / "mmod_human_face_detector.dat"))
        self._predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self._rectangle = dlib.rectangle
        self._lock = threading.Lock()

    def detection_scale(self, height: int, width: int) -> float:
        """The factor the image is resized by before the CNN sees it."""
        return min(DLIB_UPSAMPLE, (DLIB_MAX_PIXELS / (height * width)) ** 0.5)

    def detect(self, image: BGRImage) -> list[DetectedFace]:
        # dlib's models were trained on RGB (the official code hands them BGR; we give them what they expect).
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        scale = self.detection_scale(*image.shape[:2])
        with self._lock:
            if scale == DLIB_UPSAMPLE:
                # dlib's own pyramid up-step, as the official calls it: boxes come back in image pixels.
                found, found_scale = self._detector(rgb, 1), 1.0
            else:
                found, found_scale = self._detector(_resize(rgb, scale), 0), scale
            faces = []
            for detection in found:
                rect = detection.rect
                box = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], dtype=np.float32) / found_scale
                # Landmarks come from the full-resolution image, with the box mapped back to it.
                shape = self._predictor(rgb, self._rectangle(*(int(round(v)) for v in box)))
                points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
                landmarks = _dlib_to_ffhq_landmarks(points)
                if landmarks is not None:  # a face that cannot be aligned cannot be restored either
                    faces.append(DetectedFace(box=box, landmarks=landmarks, score=float(detection.confidence)))
        return faces


def select_faces(
    faces: list[DetectedFace],
    image_shape: tuple[int, ...],
    *,
    only_center_face: bool,
    max_faces: int | None,
) -> list[DetectedFace]:
    """The faces to process, in detection order.

    Drops faces whose eyes are closer than MIN_EYE_DISTANCE px; with only_center_face keeps the one whose box
    centre is nearest the image centre (official rule); then keeps at most `max_faces`, the largest boxes (area
    clipped to the image, as the official `get_largest_face` measures it).
    """
    if max_faces is not None and max_faces < 1:
        raise InvalidOptionError(f"max_faces must be at least 1 (or None for no limit); got {max_faces}")
    height, width = image_shape[:2]
    kept = [face for face in faces if _eye_distance(face) >= MIN_EYE_DISTANCE]
    if only_center_face and kept:
        centre = np.array([width / 2, height / 2])
        kept = [min(kept, key=lambda face: float(np.linalg.norm(_box_centre(face) - centre)))]
    if max_faces is not None and len(kept) > max_faces:
        areas = [_clipped_area(face.box, height, width) for face in kept]
        largest = sorted(np.argsort(areas, kind="stable")[::-1][:max_faces])
        kept = [kept[index] for index in largest]
    return kept


def faces_from_report(records: object, source: str) -> list[DetectedFace]:
    """Faces as a report lists them (`[{"box": [x1, y1, x2, y2], "landmarks": [[x, y] * 5], "score": s}, ...]`),
    e.g. from an earlier run's JSON report; raises InvalidOptionError naming `source` when they are malformed."""
    if not isinstance(records, list):
        raise InvalidOptionError(f"{source}: expected a list of faces; got {type(records).__name__}.")
    faces = []
    for index, record in enumerate(records):
        try:
            box = np.asarray(record["box"], dtype=np.float64).reshape(4)
            landmarks = np.asarray(record["landmarks"], dtype=np.float64).reshape(5, 2)
            score = float(record.get("score", 1.0))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise InvalidOptionError(
                f"{source}: face {index} needs a 'box' of 4 numbers and 'landmarks' of 5 [x, y] pairs ({error})."
            ) from error
        if not (np.isfinite(box).all() and np.isfinite(landmarks).all()):
            raise InvalidOptionError(f"{source}: face {index} has a coordinate that is not a finite number.")
        faces.append(DetectedFace(box=box, landmarks=landmarks, score=score))
    return faces


def _dlib_to_ffhq_landmarks(points: np.ndarray) -> Landmarks5 | None:
    """The FFHQ template points placed where dlib's 5 points say the face is (see DlibDetector); None when the
    points are degenerate and no alignment exists."""
    to_crop, _ = cv2.estimateAffinePartial2D(points, _DLIB_TEMPLATE_512, method=cv2.LMEDS)
    if to_crop is None:
        return None
    to_image = cv2.invertAffineTransform(to_crop)
    return (FFHQ_TEMPLATE_512 @ to_image[:, :2].T + to_image[:, 2]).astype(np.float32)


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def _eye_distance(face: DetectedFace) -> float:
    return float(np.linalg.norm(face.landmarks[0] - face.landmarks[1]))


def _box_centre(face: DetectedFace) -> np.ndarray:
    return np.array([(face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2])


def _clipped_area(box: Box, height: int, width: int) -> float:
    x1, x2 = np.clip([box[0], box[2]], 0, width)
    y1, y2 = np.clip([box[1], box[3]], 0, height)
    return float((x2 - x1) * (y2 - y1))


def _import_dlib():  # noqa: ANN202 - returns the dlib module
    try:
        import dlib
    except ImportError as error:
        raise _missing_optional("dlib") from error
    return dlib


def _face_recognition_models_dir() -> Path:
    """Where `face_recognition_models` keeps its .dat files, found without importing it (its __init__ needs
    pkg_resources, which current setuptools no longer has)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise _missing_optional("face_recognition_models")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def _missing_optional(package: str) -> InvalidOptionError:
    return InvalidOptionError(
        f"The dlib detector needs the optional package {package!r}, which is not installed "
        "(pip install dlib-bin face_recognition_models). Choose retinaface_resnet50 or retinaface_mobile0.25 instead."
    )
