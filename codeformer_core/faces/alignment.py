"""Aligning faces to the FFHQ 5-point template, and the transforms that take them back.

An alignment is the 2 x 3 similarity that maps input-image pixels to pixels of a 512 x 512 face crop. Paste-back
uses its inverse, scaled to the output size (`inverse_affine`).
"""

import cv2
import numpy as np

from ..errors import CodeFormerError
from ..layouts import FACE_SIZE, Affine, BGRImage, FaceCrop, Landmarks5

FFHQ_TEMPLATE_512: Landmarks5 = np.array(
    [
        [192.98138, 239.94708],  # left eye
        [318.90277, 240.19360],  # right eye
        [256.63416, 314.01935],  # nose tip
        [201.26117, 371.41043],  # left mouth corner
        [313.08905, 371.15118],  # right mouth corner
    ],
    dtype=np.float32,
)
"""Where the five landmarks of an FFHQ-aligned face sit in the 512 x 512 crop (facexlib's template)."""

CROP_BORDER_VALUE = (135, 133, 132)
"""BGR grey that fills crop pixels falling outside the image, as in the official crops (the network saw it in
training)."""


def estimate_alignment(landmarks: Landmarks5) -> Affine:
    """The similarity (rotation, uniform scale, translation) taking `landmarks` onto `FFHQ_TEMPLATE_512`.

    Fitted with OpenCV's least-median-of-squares estimator, as the official pipeline does, so crops match its
    crops. Raises CodeFormerError when the points are degenerate (e.g. all at one spot) and no fit exists.
    """
    points = np.asarray(landmarks, dtype=np.float32).reshape(5, 2)
    affine, _ = cv2.estimateAffinePartial2D(points, FFHQ_TEMPLATE_512, method=cv2.LMEDS)
    if affine is None:
        raise CodeFormerError(f"Cannot align a face whose landmarks are degenerate: {points.round(1).tolist()}.")
    return affine.astype(np.float64)


def align_faces(image: BGRImage, affines: list[Affine]) -> list[FaceCrop]:
    """Cut one 512 x 512 BGR uint8 crop per alignment out of `image` (bilinear; outside pixels are grey)."""
    return [
        cv2.warpAffine(
            image,
            affine,
            (FACE_SIZE, FACE_SIZE),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=CROP_BORDER_VALUE,
        )
        for affine in affines
    ]


def _pixel_scaling(factor: float) -> Affine:
    """Map pixel coordinates of an image to those of the same image resized by `factor`.

    Pixel centres sit at integer coordinates, so the edges (-0.5 and size - 0.5) must map onto each other; this is
    the convention cv2.resize uses, so a face pasted over a cv2-resized background lands on its own source pixels.
    """
    offset = 0.5 * (factor - 1.0)
    return np.array([[factor, 0.0, offset], [0.0, factor, offset]], dtype=np.float64)


def _compose(outer: Affine, inner: Affine) -> Affine:
    """outer after inner, both 2 x 3."""
    return outer[:, :2] @ inner + np.hstack([np.zeros((2, 2)), outer[:, 2:]])


def inverse_affine(affine: Affine, upscale: float, face_scale: float = 1.0) -> Affine:
    """The transform from face-crop pixels back to output pixels, for `cv2.warpAffine` of a face onto the output.

    affine: the alignment (input image -> 512 crop).
    upscale: output size / input image size.
    face_scale: face size / 512, when the restored face was itself upsampled (face upsampling) before paste-back.

    The official code adds 0.5 * upscale to the translation (and nothing when faces are upsampled); the exact
    pixel-centre shift is 0.5 * (upscale - 1), which we use: it is the same at upscale 1 and puts faces half an
    output pixel closer to where they came from at upscale > 1.
    """
    face_to_image = cv2.invertAffineTransform(np.asarray(affine, dtype=np.float64))
    crop_from_face = _pixel_scaling(1.0 / face_scale)
    return _compose(_pixel_scaling(upscale), _compose(face_to_image, crop_from_face))
