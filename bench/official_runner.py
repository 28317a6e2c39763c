"""Run one official CodeFormer script with the equivalence harness's hooks (equivalence.py starts it).

    python official_runner.py --dump DUMP.json [--faces FACES.json] [--paste-as-ours] SCRIPT -- ARGS...

Runs with the exported official tree as the working directory and first on PYTHONPATH, so `basicsr` and
`facelib` are the official ones; it never imports our package. Hooks on the official `FaceRestoreHelper`:

- `--faces`: RetinaFace's `detect_faces` returns the given faces instead of running the network. They are in
  original-image pixels; the official helper first enlarges a photo whose shorter side is below 512 (by f) and
  then detects on a copy resized by `resize / min(h, w)`, dividing the rows by that scale again, so the rows
  returned are the given numbers times f times that scale (float64, like the official rows).
- `--paste-as-ours`: the paste-back's three deliberate differences are made ours. The inverse affines are
  shifted so that, after the official paste-back adds its own offset, faces land where ours do (the exact
  pixel-centre convention; see codeformer_core/faces/alignment.py); the erosion that shrinks each face's square
  before the fade uses a centred odd kernel (see codeformer_core/faces/parsing.py `eroded_rectangle_mask`); and the
  faces of a grey photo, tinted like the input face by `adain_npy`, are rounded and clipped to uint8 before the
  blend, as ours are (codeformer_core/faces/gray.py). What is left differs only by rounding instead of truncation.
- `--dump`: what the helper computed (image sizes, is_gray, landmarks, boxes, affine matrices) as JSON.
"""

import argparse
import json
import runpy
import sys
from pathlib import Path
from typing import Any

import numpy as np

RETINAFACE_RESIZE = 640
"""`resize` the official script passes to get_face_landmarks_5; read from the call when given there."""
MIN_SHORT_SIDE = 512
"""The official `read_image` enlarges a photo whose shorter side is below this."""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dump", type=Path, required=True, help="where to write what the helper computed")
    parser.add_argument("--faces", type=Path, help="JSON list of faces (box, landmarks, score) in original pixels")
    parser.add_argument("--paste-as-ours", action="store_true", help="our paste offset, fade and grey-face clipping")
    parser.add_argument("script", help="inference_codeformer.py, inference_colorization.py, ...")
    parser.add_argument("script_args", nargs=argparse.REMAINDER, help="after --: the script's own arguments")
    args = parser.parse_args(argv)
    script_args = args.script_args[1:] if args.script_args[:1] == ["--"] else args.script_args

    state: dict[str, Any] = {}
    faces = json.loads(args.faces.read_text()) if args.faces else None
    face_upsample = "--face_upsample" in script_args
    _install_hooks(state, faces, args.paste_as_ours, face_upsample)
    sys.argv = [args.script, *script_args]
    try:
        runpy.run_path(args.script, run_name="__main__")
    finally:
        args.dump.write_text(json.dumps(state))
    return 0


def _install_hooks(state: dict[str, Any], faces: list[dict] | None, paste_as_ours: bool, face_upsample: bool) -> None:
    import facelib.utils.face_restoration_helper as helper_module
    from facelib.utils.face_restoration_helper import FaceRestoreHelper

    read_image = FaceRestoreHelper.read_image
    get_face_landmarks_5 = FaceRestoreHelper.get_face_landmarks_5
    align_warp_face = FaceRestoreHelper.align_warp_face
    get_inverse_affine = FaceRestoreHelper.get_inverse_affine

    def recording_read_image(helper: FaceRestoreHelper, img: Any) -> None:
        state["original_shape"] = list(np.shape(img))
        read_image(helper, img)
        state["input_shape"] = list(helper.input_img.shape)
        state["is_gray"] = bool(helper.is_gray)

    def recording_landmarks(helper: FaceRestoreHelper, *args: Any, **kwargs: Any) -> int:
        state["resize"] = kwargs.get("resize", RETINAFACE_RESIZE)
        found = get_face_landmarks_5(helper, *args, **kwargs)
        state["landmarks"] = [np.asarray(points, np.float64).tolist() for points in helper.all_landmarks_5]
        state["det_faces"] = [np.asarray(face, np.float64).tolist() for face in _plain_boxes(helper.det_faces)]
        return found

    def recording_align(helper: FaceRestoreHelper, *args: Any, **kwargs: Any) -> None:
        align_warp_face(helper, *args, **kwargs)
        state["affines"] = [np.asarray(matrix, np.float64).tolist() for matrix in helper.affine_matrices]

    def shifted_inverse_affine(helper: FaceRestoreHelper, *args: Any, **kwargs: Any) -> None:
        get_inverse_affine(helper, *args, **kwargs)
        if paste_as_ours:
            for matrix in helper.inverse_affine_matrices:
                matrix[:, 2] += _offset_to_ours(matrix, helper.upscale_factor, face_upsample)
        state["inverse_affines"] = [matrix.tolist() for matrix in helper.inverse_affine_matrices]

    FaceRestoreHelper.read_image = recording_read_image
    FaceRestoreHelper.get_face_landmarks_5 = recording_landmarks
    FaceRestoreHelper.align_warp_face = recording_align
    FaceRestoreHelper.get_inverse_affine = shifted_inverse_affine
    if paste_as_ours:
        helper_module.cv2 = _CentredFadeCv2(helper_module.cv2)
        adain_npy = helper_module.adain_npy
        helper_module.adain_npy = lambda content, style: np.clip(np.rint(adain_npy(content, style)), 0, 255).astype(
            np.uint8
        )
    if faces is not None:
        _give_faces_to_retinaface(state, faces)


class _CentredFadeCv2:
    """The cv2 module as the official helper sees it, except for the erosion that shrinks a face's square before
    the fade: an erosion of the previous erosion's result. Its kernel has an even side 2e, whose anchor sits off
    centre and shifts the fade one pixel right and down; ours erodes with the centred 2e + 1."""

    def __init__(self, cv2_module: Any) -> None:
        self._cv2 = cv2_module
        self._last_eroded: np.ndarray | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cv2, name)

    def erode(self, source: np.ndarray, kernel: np.ndarray, *args: Any, **kwargs: Any) -> np.ndarray:
        if source is self._last_eroded and kernel.shape[0] % 2 == 0:
            kernel = np.ones((kernel.shape[0] + 1, kernel.shape[1] + 1), kernel.dtype)
        self._last_eroded = self._cv2.erode(source, kernel, *args, **kwargs)
        return self._last_eroded


def _offset_to_ours(inverse: np.ndarray, upscale: int, face_upsample: bool) -> np.ndarray:
    """What to add to the translation of an official inverse affine (crop -> output, i.e. upscale x the inverse
    alignment) so the paste-back lands faces where ours does.

    Ours maps crop pixel c to upscale * (L c + t) + (upscale - 1) / 2 (pixel centres stay centres). The official
    adds upscale / 2 later when it pastes 512-px faces, so it needs -1/2 here (none at upscale 1, where neither
    adds anything). With face upsampling it pastes faces of 512 * upscale px with [L | upscale * t], where ours
    maps face pixel p through the same centre-preserving scalings: L p + upscale * t + (upscale - 1) / 2 * (1 - L 1).
    """
    if upscale == 1:
        return np.zeros(2)
    if not face_upsample:
        return np.full(2, -0.5)
    linear = inverse[:, :2] / upscale  # the official divides the matrix by upscale before pasting
    return 0.5 * (upscale - 1) * (1.0 - linear.sum(axis=1))


def _plain_boxes(det_faces: Any) -> list:
    """det_faces is a list of rows, or (after only_center_face) one row; dlib's are rectangles."""
    if isinstance(det_faces, np.ndarray) and det_faces.ndim == 1:
        return [det_faces]
    if det_faces and hasattr(det_faces[0], "rect"):
        return [[d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom(), d.confidence] for d in det_faces]
    return list(det_faces)


def _give_faces_to_retinaface(state: dict[str, Any], faces: list[dict]) -> None:
    from facelib.detection.retinaface.retinaface import RetinaFace

    def given_faces(_network: RetinaFace, image: np.ndarray, *_args: Any, **_kwargs: Any) -> np.ndarray:
        original_short = min(state["original_shape"][:2])
        enlarged = float(MIN_SHORT_SIDE) / original_short if original_short < MIN_SHORT_SIDE else 1.0
        # The helper divides the rows by this scale; image is its resize of the enlarged photo.
        detection_scale = state["resize"] / min(state["input_shape"][:2])
        rows = [
            [*face["box"], face.get("score", 1.0), *np.asarray(face["landmarks"], np.float64).reshape(10)]
            for face in faces
        ]
        state["detection_image_shape"] = list(image.shape)
        # The score is scaled too: the helper divides whole rows (a quirk that changes nothing downstream).
        return np.asarray(rows, np.float64).reshape(-1, 15) * enlarged * detection_scale

    RetinaFace.detect_faces = given_faces


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
