"""The holes of an inpainting run: found or given in the photo, carried into each face, filled, and kept to.

The inpainting network was trained on faces whose holes were painted pure white, and it changes only those
pixels; these helpers keep every other pixel of the photo exactly as it was.
"""

import cv2
import numpy as np

from ..errors import InvalidImageError
from ..layouts import FACE_SIZE, Affine, BGRImage, FaceCrop, Mask


def hole_mask(bgr: BGRImage, mask: Mask | None) -> Mask:
    """The holes as a float32 0/1 mask the size of `bgr`: where `mask` is above 0.5 (resized to fit, nearest
    neighbour), or without a mask the pure-white pixels (the official convention)."""
    height, width = bgr.shape[:2]
    if mask is None:
        return np.all(bgr == 255, axis=2).astype(np.float32)
    if mask.ndim != 2:
        raise InvalidImageError(f"The inpainting mask must be a single-channel image; got shape {mask.shape}.")
    if mask.shape != (height, width):
        mask = cv2.resize(mask.astype(np.float32), (width, height), interpolation=cv2.INTER_NEAREST)
    return (mask > 0.5).astype(np.float32)


def warp_mask_to_faces(mask: Mask, affines: list[Affine]) -> list[Mask]:
    """Carry a whole-image mask (H x W, 1 = hole) into each face crop: 512 x 512 float32 of exactly 0 or 1.

    Bilinear warp then a 0.5 threshold, so a rotated or scaled stroke keeps smooth edges but stays binary (the
    inpainting network expects holes of pure white, not half-grey). Outside the image counts as no hole.
    """
    source = np.asarray(mask, dtype=np.float32)
    crops = []
    for affine in affines:
        warped = cv2.warpAffine(
            source, affine, (FACE_SIZE, FACE_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
        crops.append((warped >= 0.5).astype(np.float32))
    return crops


def whiten_holes(crop: FaceCrop, hole: Mask) -> FaceCrop:
    """The crop with its holes painted pure white, as the network expects them."""
    crop = crop.copy()
    crop[hole > 0.5] = 255
    return crop


def keep_outside_holes(filled: list[FaceCrop], crops: list[FaceCrop], face_holes: list[Mask]) -> list[FaceCrop]:
    """Each network output inside its holes and the crop it was given elsewhere."""
    return [
        np.where(hole[..., None] > 0.5, out, crop) for out, crop, hole in zip(filled, crops, face_holes, strict=True)
    ]


def only_in_holes(output: BGRImage, background: BGRImage, holes: Mask, upscale: int) -> BGRImage:
    """The pasted result inside the photo's holes and the (upscaled) input everywhere else."""
    if upscale > 1:
        holes = cv2.resize(holes, (output.shape[1], output.shape[0]), interpolation=cv2.INTER_NEAREST)
    return np.where(holes[..., None] > 0.5, output, background)
