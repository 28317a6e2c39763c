"""Geometry of alignment and paste-back: a real aligned face is placed into a canvas by a known similarity, found
back by the alignment, and pasted back where it came from, changing nothing outside its mask."""


import cv2
import numpy as np
import pytest

from codeformer_core.errors import CodeFormerError
from codeformer_core.faces import paste
from codeformer_core.faces.alignment import (
    CROP_BORDER_VALUE,
    FFHQ_TEMPLATE_512,
    align_faces,
    estimate_alignment,
    inverse_affine,
)
from codeformer_core.faces.detection import DetectedFace
from codeformer_core.faces.inpaint import warp_mask_to_faces
from codeformer_core.faces.paste import BOX_COLOR, blend_faces, draw_face_boxes, face_blend, paste_faces
from codeformer_core.layouts import FACE_SIZE

from .conftest import SAMPLES

CANVAS_HEIGHT, CANVAS_WIDTH = 700, 820


def similarity(angle_degrees: float, scale: float, offset: tuple[float, float]) -> np.ndarray:
    """2 x 3 matrix: crop pixels -> canvas pixels."""
    angle = np.deg2rad(angle_degrees)
    cos, sin = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[cos, -sin, offset[0]], [sin, cos, offset[1]]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    image = cv2.imread(str(SAMPLES / "aligned" / "0240.png"), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (FACE_SIZE, FACE_SIZE, 3)
    return image


@pytest.fixture(scope="module")
def background() -> np.ndarray:
    noise = np.random.default_rng(7).integers(0, 256, (CANVAS_HEIGHT, CANVAS_WIDTH, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 2)


PLACEMENTS = [similarity(17.0, 0.8, (330.0, 40.0)), similarity(-25.0, 0.45, (120.0, 330.0))]


def place(face: np.ndarray, background: np.ndarray, placement: np.ndarray) -> np.ndarray:
    """The canvas: background, with the whole face square drawn in by `placement`."""
    size = (background.shape[1], background.shape[0])
    warped = cv2.warpAffine(face, placement, size, flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(np.ones((FACE_SIZE, FACE_SIZE), np.float32), placement, size) > 0.999
    return np.where(inside[..., None], warped, background)


def upscaled(image: np.ndarray, upscale: int) -> np.ndarray:
    if upscale == 1:
        return image
    return cv2.resize(image, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_LINEAR)


def face_interior(affine: np.ndarray, upscale: int, shape: tuple[int, ...], margin: int) -> np.ndarray:
    """Output pixels at least `margin` output pixels inside the face's crop square."""
    square = cv2.warpAffine(
        np.ones((FACE_SIZE, FACE_SIZE), np.float32), inverse_affine(affine, upscale), (shape[1], shape[0])
    )
    return cv2.erode(square, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)) > 0.999


def crop_square_outside(affine: np.ndarray, upscale: int, shape: tuple[int, ...], margin: int = 2) -> np.ndarray:
    """Output pixels more than `margin` pixels away from the face's crop square."""
    corners = np.array([[-0.5, -0.5], [FACE_SIZE - 0.5, -0.5], [FACE_SIZE - 0.5] * 2, [-0.5, FACE_SIZE - 0.5]])
    polygon = apply(inverse_affine(affine, upscale), corners)
    near = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(near, np.round(polygon).astype(np.int32), 1)
    return cv2.dilate(near, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)) == 0


@pytest.mark.parametrize("placement", PLACEMENTS, ids=["large-rotated", "small-rotated"])
def test_alignment_recovers_the_placed_face(face, background, placement):
    canvas = place(face, background, placement)
    landmarks = apply(placement, FFHQ_TEMPLATE_512).astype(np.float32)

    affine = estimate_alignment(landmarks)
    np.testing.assert_allclose(affine, cv2.invertAffineTransform(placement), atol=2e-3)

    (crop,) = align_faces(canvas, [affine])
    assert crop.shape == (FACE_SIZE, FACE_SIZE, 3) and crop.dtype == np.uint8
    centre = np.s_[128:384, 128:384]
    error = np.abs(crop[centre].astype(float) - face[centre]).mean()
    assert error < 1.0
    # A crop one pixel off differs clearly: the check above can fail.
    shifted = align_faces(canvas, [affine + [[0, 0, 1.0], [0, 0, 0]]])[0]
    assert np.abs(shifted[centre].astype(float) - face[centre]).mean() > 2 * error


def test_crop_outside_the_image_is_the_official_grey(face, background):
    affine = estimate_alignment(apply(similarity(0.0, 0.5, (-100.0, 10.0)), FFHQ_TEMPLATE_512).astype(np.float32))
    (crop,) = align_faces(background, [affine])
    assert (crop[:, :100] == CROP_BORDER_VALUE).all()  # left of the image
    assert not (crop[:, 300:] == CROP_BORDER_VALUE).all()


def test_degenerate_landmarks_are_refused():
    with pytest.raises(CodeFormerError, match="degenerate"):
        estimate_alignment(np.full((5, 2), 40.0, np.float32))


@pytest.mark.parametrize("upscale", [1, 2, 3])
def test_inverse_affine_maps_crop_points_to_output_pixel_centres(upscale):
    placement = PLACEMENTS[0]
    affine = cv2.invertAffineTransform(placement)
    in_image = apply(placement, FFHQ_TEMPLATE_512)
    expected = upscale * in_image + 0.5 * (upscale - 1)  # cv2.resize's pixel-centre convention
    np.testing.assert_allclose(apply(inverse_affine(affine, upscale), FFHQ_TEMPLATE_512), expected, atol=1e-6)
    # A face upsampled by k before paste-back: its pixel (k x + (k - 1) / 2) is crop pixel x.
    k = 2
    upsampled_points = k * FFHQ_TEMPLATE_512 + 0.5 * (k - 1)
    np.testing.assert_allclose(apply(inverse_affine(affine, upscale, k), upsampled_points), expected, atol=1e-6)


@pytest.mark.parametrize("upscale", [1, 2])
@pytest.mark.parametrize("placement", PLACEMENTS, ids=["large-rotated", "small-rotated"])
def test_paste_back_puts_the_face_where_it_came_from(face, background, placement, upscale):
    canvas = place(face, background, placement)
    affine = estimate_alignment(apply(placement, FFHQ_TEMPLATE_512).astype(np.float32))
    target = upscaled(canvas, upscale)

    pasted = paste_faces(target, [face], [affine], None, upscale)
    interior = face_interior(affine, upscale, target.shape, margin=8 * upscale)
    error = np.abs(pasted.astype(float) - target)[interior].mean()
    assert error < 0.5
    # The same paste one input pixel to the side is measurably worse: the check above can fail.
    nudged = affine.copy()
    nudged[:, 2] += affine[:, 0]  # crop coordinates of the image point one pixel to the right
    nudged_error = np.abs(paste_faces(target, [face], [nudged], None, upscale).astype(float) - target)[interior].mean()
    assert nudged_error > error + 0.5


@pytest.mark.parametrize("upscale", [1, 2])
def test_paste_back_changes_nothing_outside_the_face_and_replaces_inside(face, background, upscale):
    placement = PLACEMENTS[0]
    affine = estimate_alignment(apply(placement, FFHQ_TEMPLATE_512).astype(np.float32))
    target = upscaled(background, upscale)
    other_face = 255 - face  # anything visibly different from the background

    pasted = paste_faces(target, [other_face], [affine], None, upscale)

    outside = crop_square_outside(affine, upscale, target.shape)
    assert np.array_equal(pasted[outside], target[outside])
    # The soft edge is ~1/20 of the face's side; well inside it the face replaces the background.
    side = FACE_SIZE * 0.8 * upscale
    interior = face_interior(affine, upscale, target.shape, margin=int(side / 10))
    warped = cv2.warpAffine(other_face, inverse_affine(affine, upscale), (target.shape[1], target.shape[0]))
    assert np.abs(pasted[interior].astype(int) - warped[interior]).max() <= 1


def test_parse_mask_limits_what_is_pasted(face, background):
    affine = estimate_alignment(apply(PLACEMENTS[0], FFHQ_TEMPLATE_512).astype(np.float32))
    mask = np.zeros((1, FACE_SIZE, FACE_SIZE), np.float32)
    mask[0, 200:320, 150:360] = 1.0  # only a band across the eyes and nose
    pasted = paste_faces(background, [255 - face], [affine], mask, 1)

    changed = np.abs(pasted.astype(int) - background).max(axis=2) > 0
    band_corners = apply(inverse_affine(affine, 1), np.array([[150, 200], [360, 200], [360, 320], [150, 320]], float))
    band = np.zeros(background.shape[:2], np.uint8)
    cv2.fillConvexPoly(band, np.round(band_corners).astype(np.int32), 1)
    assert changed[band.astype(bool)].mean() > 0.99
    assert not changed[cv2.dilate(band, np.ones((5, 5), np.uint8)) == 0].any()


def test_bounded_regions_give_the_whole_image_result(face, background, monkeypatch):
    """The per-face region is an optimisation only: a region as big as the output gives the same pixels."""
    affines = [estimate_alignment(apply(p, FFHQ_TEMPLATE_512).astype(np.float32)) for p in PLACEMENTS]
    faces = [face, 255 - face]
    masks = np.stack([np.full((FACE_SIZE, FACE_SIZE), 0.7, np.float32)] * 2)
    target = upscaled(background, 2)
    bounded = paste_faces(target, faces, affines, masks, 2)
    monkeypatch.setattr(paste, "_REGION_MARGIN", 100_000)
    whole = paste_faces(target, faces, affines, masks, 2)
    assert np.abs(bounded.astype(int) - whole).max() <= 1


def test_a_blend_made_once_pastes_any_faces_of_its_size_as_paste_faces_does(face, background):
    """What a re-render at another w relies on: a face's blend does not depend on the face's pixels."""
    affines = [estimate_alignment(apply(p, FFHQ_TEMPLATE_512).astype(np.float32)) for p in PLACEMENTS]
    masks = np.stack([np.full((FACE_SIZE, FACE_SIZE), 0.7, np.float32), np.ones((FACE_SIZE, FACE_SIZE), np.float32)])
    target = upscaled(background, 2)
    blends = [face_blend(affine, mask, FACE_SIZE, 2, target.shape) for affine, mask in zip(affines, masks)]
    for faces in ([face, 255 - face], [255 - face, face // 2]):
        pasted = blend_faces(target, faces, blends)
        assert np.array_equal(pasted, paste_faces(target, faces, affines, masks, 2))
        assert not np.array_equal(pasted, target)


def test_upsampled_faces_land_where_512_faces_do(face, background):
    affine = estimate_alignment(apply(PLACEMENTS[0], FFHQ_TEMPLATE_512).astype(np.float32))
    target = upscaled(background, 2)
    big_face = cv2.resize(255 - face, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
    from_512 = paste_faces(target, [255 - face], [affine], None, 2)
    from_1024 = paste_faces(target, [big_face], [affine], None, 2)
    interior = face_interior(affine, 2, target.shape, margin=60)
    assert np.abs(from_512.astype(float) - from_1024)[interior].mean() < 2.0


def test_a_face_outside_the_output_is_skipped(face, background):
    affine = estimate_alignment(apply(similarity(0.0, 0.3, (-400.0, -400.0)), FFHQ_TEMPLATE_512).astype(np.float32))
    assert np.array_equal(paste_faces(background, [face], [affine], None, 1), background)


def test_draw_face_boxes_frames_the_crop_square(background):
    placement = PLACEMENTS[0]
    landmarks = apply(placement, FFHQ_TEMPLATE_512).astype(np.float32)
    detected = DetectedFace(box=np.array([0, 0, 1, 1], np.float32), landmarks=landmarks, score=1.0)
    drawn = draw_face_boxes(background, [detected], 1)

    # The frame is ~2.4 output px wide here: pixels on its middle line are (nearly) pure green.
    on_frame = apply(placement, np.array([[1.5, 1.5], [510.0, 1.5], [510.0, 510.0], [1.5, 510.0], [256.0, 1.5]]))
    for x, y in np.round(on_frame).astype(int):
        assert np.abs(drawn[y, x].astype(int) - BOX_COLOR).max() <= 40
    centre = np.round(apply(placement, np.array([[256.0, 256.0]]))[0]).astype(int)
    inner = np.s_[centre[1] - 100 : centre[1] + 100, centre[0] - 100 : centre[0] + 100]
    assert np.array_equal(drawn[inner], background[inner])
    outside = crop_square_outside(cv2.invertAffineTransform(placement), 1, drawn.shape)
    assert np.array_equal(drawn[outside], background[outside])


def test_hole_masks_follow_the_face_and_stay_binary():
    placement = PLACEMENTS[0]
    affine = cv2.invertAffineTransform(placement)
    holes = np.zeros((CANVAS_HEIGHT, CANVAS_WIDTH), np.float32)
    stroke = apply(placement, np.array([[180.0, 230.0], [330.0, 230.0], [330.0, 250.0], [180.0, 250.0]]))
    cv2.fillConvexPoly(holes, np.round(stroke).astype(np.int32), 1.0)

    (crop_holes,) = warp_mask_to_faces(holes, [affine])
    assert crop_holes.shape == (FACE_SIZE, FACE_SIZE) and crop_holes.dtype == np.float32
    assert set(np.unique(crop_holes)) == {0.0, 1.0}
    assert crop_holes[233:248, 185:325].all()
    assert crop_holes[:220].sum() == 0 and crop_holes[262:].sum() == 0
