"""The example photos that ship with the app, made from scikit-image's public-domain `data.astronaut()`.

Nothing is downloaded: the photo is inside the scikit-image wheel, and we degrade it ourselves (blur, noise, JPEG,
grayscale, white strokes) with fixed parameters and a fixed seed, so the examples are the same on every start.
They are written once per process into a temporary directory that is removed at exit.
"""

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from skimage import data

from codeformer_core.faces.alignment import align_faces, estimate_alignment
from codeformer_core.images import encode_png
from codeformer_core.layouts import BGRImage, FaceCrop, Task

ASTRONAUT_LANDMARKS = np.array(
    [[204.0, 101.0], [246.0, 102.5], [225.0, 127.0], [203.0, 140.0], [244.0, 141.0]], np.float32
)
"""Eyes, nose tip and mouth corners of Eileen Collins in `data.astronaut()` (512 x 512), placed by eye; enough to
align her face to the FFHQ template for the aligned-face examples."""

HOLE_STROKES = (
    ((150, 215), (240, 250), (350, 225)),
    ((215, 330), (300, 300)),
    ((330, 400), (380, 330), (400, 250)),
)
"""White brush strokes over the aligned face (x, y in the 512 x 512 crop): across the eyes, the nose, a cheek."""

SEED = 2022


@dataclass(frozen=True)
class Example:
    """One example: the file and the settings it is meant for (they fill the inputs of the same names; fidelity
    is left at the default where the task does not read it)."""

    label: str
    path: Path
    task: Task
    aligned: bool
    fidelity: float
    upscale: int


@functools.cache
def bundled_examples() -> tuple[Example, ...]:
    """Write the example images (once per process) and describe them."""
    directory = Path(tempfile.mkdtemp(prefix="codeformer-examples-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return write_examples(directory)


def write_examples(directory: Path) -> tuple[Example, ...]:
    """Write the example PNGs into `directory` under fixed names."""
    rng = np.random.default_rng(SEED)
    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    face = aligned_face(photo)
    images: list[tuple[Example, BGRImage]] = [
        (
            Example("Blurry, noisy JPEG photo", directory / "astronaut_degraded.png", "restore", False, 0.5, 2),
            degrade(photo, scale=0.5, blur_sigma=1.0, noise_sigma=5.0, jpeg_quality=35, rng=rng),
        ),
        (
            Example("Badly degraded aligned face", directory / "face_degraded.png", "restore", True, 0.7, 1),
            cv2.resize(
                degrade(face, scale=0.25, blur_sigma=1.0, noise_sigma=6.0, jpeg_quality=30, rng=rng),
                face.shape[1::-1],
                interpolation=cv2.INTER_LINEAR,
            ),
        ),
        (
            Example("Black-and-white aligned face", directory / "face_gray.png", "colorize", True, 0.5, 1),
            cv2.cvtColor(cv2.cvtColor(face, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR),
        ),
        (
            Example("Aligned face with white holes", directory / "face_holes.png", "inpaint", True, 0.5, 1),
            paint_white_strokes(face),
        ),
    ]
    for example, image in images:
        example.path.write_bytes(encode_png(image))
    return tuple(example for example, _ in images)


def aligned_face(photo: BGRImage) -> FaceCrop:
    """The astronaut's face, aligned to the FFHQ template as the aligned-input task expects (512 x 512 BGR)."""
    return align_faces(photo, [estimate_alignment(ASTRONAUT_LANDMARKS)])[0]


def degrade(
    image: BGRImage, *, scale: float, blur_sigma: float, noise_sigma: float, jpeg_quality: int, rng: np.random.Generator
) -> BGRImage:
    """Downscale, blur, add Gaussian noise, then compress as JPEG: the usual recipe of a damaged old photo."""
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    blurred = cv2.GaussianBlur(small, (0, 0), blur_sigma)
    noisy = np.clip(blurred + rng.normal(0.0, noise_sigma, blurred.shape), 0, 255).astype(np.uint8)
    ok, jpeg = cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return cv2.imdecode(jpeg, cv2.IMREAD_COLOR)


def paint_white_strokes(face: FaceCrop) -> FaceCrop:
    """Pure-white strokes without anti-aliasing: the inpainting convention is that exactly-white pixels are holes."""
    painted = face.copy()
    for stroke in HOLE_STROKES:
        points = np.array(stroke, np.int32).reshape(-1, 1, 2)
        cv2.polylines(painted, [points], isClosed=False, color=(255, 255, 255), thickness=14, lineType=cv2.LINE_8)
    return painted
