"""Putting restored faces back into the photo, and the draw-boxes option.

Follows the official paste-back: inverse warp of the face, of its square and of its parse mask; the square eroded
and blurred into a soft rectangle; the parse mask bounded by it; an alpha blend. Differences, all below a level
or a pixel: faces land on exact pixel centres (see `inverse_affine`), the rectangle's fade is centred (see
`eroded_rectangle_mask`), and blends are rounded rather than truncated.

Each face is warped into the output only over its own bounding region, plus a margin that holds every pixel the
erosion and blur can reach, where the official code warps, erodes and blends the whole output 5-6 times per face,
so the cost no longer grows with the photo (bench/README.md).
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..layouts import FACE_SIZE, Affine, BGRImage, FaceCrop, Mask
from .alignment import estimate_alignment, inverse_affine
from .parsing import eroded_rectangle_mask

if TYPE_CHECKING:
    from .detection import DetectedFace

BOX_COLOR = (0, 255, 0)
"""BGR of the draw-boxes frame (official: green)."""

_BOX_WIDTH_FACTOR = 1400.0
"""Official frame width in crop pixels: 1400 / (side of the face in the output), i.e. ~2.7 output pixels."""

_REGION_MARGIN = 4
"""Output pixels kept around a face's warped square. Bilinear warping spills one pixel past the square and the soft
mask fades out inside it (erosion as wide as the blur), so nothing beyond the margin could change; the margin also
keeps erosion and blur from meeting the region's edge where the whole-output computation would see zeros."""


@dataclass(frozen=True)
class _FaceRegion:
    """The part of the output a face can change, and the warp from face pixels into it."""

    rows: slice
    cols: slice
    to_region: Affine

    @classmethod
    def of(cls, to_output: Affine, face_side: int, output_shape: tuple[int, ...]) -> "_FaceRegion | None":
        """None when the face's square lies wholly outside the output."""
        edges = np.array([[-0.5, -0.5], [face_side - 0.5, -0.5], [-0.5, face_side - 0.5], [face_side - 0.5] * 2])
        corners = edges @ to_output[:, :2].T + to_output[:, 2]
        height, width = output_shape[:2]
        left = max(0, int(np.floor(corners[:, 0].min())) - _REGION_MARGIN)
        top = max(0, int(np.floor(corners[:, 1].min())) - _REGION_MARGIN)
        right = min(width, int(np.ceil(corners[:, 0].max())) + _REGION_MARGIN + 1)
        bottom = min(height, int(np.ceil(corners[:, 1].max())) + _REGION_MARGIN + 1)
        if left >= right or top >= bottom:
            return None
        to_region = to_output.copy()
        to_region[:, 2] -= (left, top)
        return cls(slice(top, bottom), slice(left, right), to_region)

    def warp(self, image: np.ndarray) -> np.ndarray:
        """Bilinear warp of face-crop pixels into the region; outside the crop is 0."""
        size = (self.cols.stop - self.cols.start, self.rows.stop - self.rows.start)
        return cv2.warpAffine(image, self.to_region, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

    def covered_square(self, face_side: int, upscale: int) -> Mask:
        """The crop's square in the region, eroded by 2 x upscale px to drop the half-covered border pixels."""
        square = self.warp(np.ones((face_side, face_side), np.float32))
        return cv2.erode(square, np.ones((2 * upscale, 2 * upscale), np.uint8))


@dataclass(frozen=True)
class FaceBlend:
    """How one face goes into the output: the region it can change (and the warp into it), its square as warped
    there and eroded, and the blend weight (the soft rectangle, bounded by the parse mask when there is one).

    It depends on the face's alignment, parse mask and side, and on the upscale, not on the face's pixels: a
    re-render at another w reuses it, and pays for one warp and one blend per face.
    """

    region: _FaceRegion
    covered: Mask
    weight: np.ndarray
    """H x W x 1 float32 in [0, 1]."""


def face_blend(
    affine: Affine, mask: Mask | None, face_side: int, upscale: int, output_shape: tuple[int, ...]
) -> FaceBlend | None:
    """The blend of a face cut with `affine` (input image -> 512 crop, input pixels) and pasted at `face_side`
    pixels into an output of `output_shape` (input size x upscale); mask: its S x S paste mask in [0, 1], or None
    for the eroded rectangle alone. None when the face lies wholly outside the output."""
    region = _FaceRegion.of(inverse_affine(affine, upscale, face_side / FACE_SIZE), face_side, output_shape)
    if region is None:
        return None
    covered = region.covered_square(face_side, upscale)
    weight = eroded_rectangle_mask(covered)
    if mask is not None:
        if mask.shape[0] != face_side:
            mask = cv2.resize(mask, (face_side, face_side), interpolation=cv2.INTER_LINEAR)
        weight = np.minimum(weight, region.warp(np.asarray(mask, np.float32)))
    return FaceBlend(region, covered, weight[..., None])


def paste_faces(
    background: BGRImage, faces: list[FaceCrop], affines: list[Affine], masks: np.ndarray | None, upscale: int
) -> BGRImage:
    """The background with every face blended in at the place it was cut from.

    background: the photo at output size (input size x upscale), BGR uint8: the input resized, or Real-ESRGAN's.
    faces: restored faces, BGR uint8, 512 x 512 (or 512k x 512k after face upsampling by k).
    affines: the alignments the faces were cut with (input image -> 512 crop), in input-image pixels.
    masks: N x S x S float32 in [0, 1], ParseNet's paste masks (S = 512 or the face size); None pastes with the
      eroded rectangle alone (the official result with parsing off).
    upscale: output size / input size.

    Faces are blended in order, so a later face covers an earlier one where they overlap. Pixels no face's soft
    mask reaches keep the background's exact values.
    """
    face_masks = [None] * len(faces) if masks is None else list(masks)
    blends = [face_blend(affine, mask, face.shape[0], upscale, background.shape)
              for face, affine, mask in zip(faces, affines, face_masks, strict=True)]
    return blend_faces(background, faces, blends)


def blend_faces(background: BGRImage, faces: list[FaceCrop], blends: list[FaceBlend | None]) -> BGRImage:
    """`paste_faces` with each face's blend given (`face_blend`; None leaves that face out)."""
    canvas = background.copy()
    for face, blend in zip(faces, blends, strict=True):
        if blend is None:
            continue
        warped_face = blend.region.warp(face).astype(np.float32) * blend.covered[..., None]
        _blend_into(canvas[blend.region.rows, blend.region.cols], warped_face, blend.weight)
    return canvas


def draw_face_boxes(image: BGRImage, faces: list["DetectedFace"], upscale: int) -> BGRImage:
    """Frame each face's crop square in green, as the official draw-boxes option does.

    The frame is the 512 crop's outline carried into the output (rotated with the face), ~2.7 output pixels wide
    whatever the face's size. image is at output size; face landmarks are in input pixels.
    """
    canvas = image.copy()
    color = np.array(BOX_COLOR, np.float32)
    for face in faces:
        to_output = inverse_affine(estimate_alignment(face.landmarks), upscale)
        region = _FaceRegion.of(to_output, FACE_SIZE, canvas.shape)
        if region is None:
            continue
        side = max(float(region.covered_square(FACE_SIZE, upscale).sum()), 1.0) ** 0.5
        width = int(_BOX_WIDTH_FACTOR / side)
        frame = np.ones((FACE_SIZE, FACE_SIZE), np.float32)
        frame[width : FACE_SIZE - width, width : FACE_SIZE - width] = 0
        _blend_into(canvas[region.rows, region.cols], color, region.warp(frame)[..., None])
    return canvas


def _blend_into(view: BGRImage, foreground: np.ndarray, weight: np.ndarray) -> None:
    """view <- weight * foreground + (1 - weight) * view, in place, rounded to uint8.

    Only the face's region is ever converted to float, so the cost does not grow with the photo. (The official
    truncates instead of rounding, which darkens blended pixels by half a level on average.)
    """
    current = view.astype(np.float32)
    current += weight * (foreground - current)
    np.clip(np.rint(current), 0, 255, out=current)
    view[...] = current
