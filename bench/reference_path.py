"""The reference path the benchmark measures our pipeline against: CodeFormer as the paper's code runs it.

- Network: spandrel's port of the official `codeformer_arch.py` (package `spandrel-extra-arches`; spandrel itself
  moved CodeFormer there). It loads the published state_dict as it is, `strict=True`, no key remapping (checked
  against the golden key manifests of all three tasks). Its `forward(x, weight=0.5)` names the fidelity `weight`,
  and silently ignores an official-style `w=` keyword, so it is always called with `weight=`.
- Data path: facexlib's `FaceRestoreHelper` in the order of the official `inference_codeformer.py`: read the
  image, 5-point landmarks, `align_warp_face`, then per face, one at a time, float32: `img2tensor`, normalise to
  [-1, 1], forward under `torch.no_grad()`, basicsr's `tensor2img`; then `get_inverse_affine` and
  `paste_faces_to_input_image` with ParseNet at 512 for the paste masks. (The official script imports the copy
  of this helper vendored in CodeFormer's `facelib`, whose paste-back also bounds the parse mask by the soft
  rectangle; facexlib's pastes with the parse mask alone. Same networks, slightly less mask arithmetic.)
- The helper builds its detector and parser through facexlib's `init_*_model`, which would download from GitHub:
  `model_rootpath` points it at a directory that already holds the files under their official names.
- Detection is not run: the landmarks come from the caller, so both paths align exactly the same faces.
- A photo under 512 px on its shorter side is enlarged first (bilinear, to 512), as the official script's helper
  does: facexlib's helper leaves it, and would restore and paste the faces at a third of their size.
"""

from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch import nn
from torchvision.transforms.functional import normalize

from codeformer_core.compat import register_torchvision_alias
from codeformer_core.pipeline.clock import StageClock  # only its timing: no engine code runs on this path

register_torchvision_alias()  # basicsr imports a module torchvision removed

from basicsr.utils import img2tensor, tensor2img  # noqa: E402
from facexlib.utils.face_restoration_helper import FaceRestoreHelper  # noqa: E402
from spandrel_extra_arches.architectures.CodeFormer import CodeFormerArch  # noqa: E402

from bench.bench_weights import CODEFORMER_FILE  # noqa: E402

FACE_SIZE = 512


def load_reference_network(weights_dir: Path, device: torch.device) -> nn.Module:
    """spandrel's CodeFormer with `codeformer.pth` from `weights_dir` (strict load), eval mode, on `device`."""
    checkpoint = torch.load(weights_dir / CODEFORMER_FILE, map_location="cpu", weights_only=True)
    descriptor = CodeFormerArch().load(checkpoint["params_ema"])  # load_state_dict(strict=True) inside
    return descriptor.model.eval().to(device)


def reference_helper(weights_dir: Path, device: torch.device, upscale: int) -> FaceRestoreHelper:
    """The official script's helper: 512 faces, crop ratio 1, RetinaFace ResNet-50 loaded (as the official script
    does, although the benchmark passes landmarks in), ParseNet for the paste masks."""
    return FaceRestoreHelper(
        upscale,
        face_size=FACE_SIZE,
        crop_ratio=(1, 1),
        det_model="retinaface_resnet50",
        save_ext="png",
        use_parse=True,
        device=device,
        model_rootpath=str(weights_dir),
    )


class ReferenceFace(NamedTuple):
    face: np.ndarray
    """The restored face, 512 x 512 x 3, BGR uint8 (the official script's output)."""
    output: torch.Tensor
    """The network's raw output, 1 x 3 x 512 x 512 RGB in [-1, 1] space, float32 on the CPU."""
    logits: torch.Tensor
    """The transformer's logits, 1 x 256 x codebook_size, float32 on the CPU."""


def restore_face_reference(
    net: nn.Module, face_bgr: np.ndarray, fidelity: float, device: torch.device
) -> ReferenceFace:
    """One aligned 512x512 BGR uint8 face through the network, as the official script does it."""
    face_t = img2tensor(face_bgr / 255.0, bgr2rgb=True, float32=True)
    normalize(face_t, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), inplace=True)
    face_t = face_t.unsqueeze(0).to(device)
    with torch.no_grad():
        output, logits = net(face_t, weight=fidelity)
        raw_output = output.float().cpu().clone()  # tensor2img clamps its input in place
        restored = tensor2img(output, rgb2bgr=True, min_max=(-1, 1))
    torch.cuda.empty_cache()  # the official script's per-face call (nothing to do on a CPU)
    return ReferenceFace(restored.astype("uint8"), raw_output, logits.float().cpu())


def restore_photo_reference(
    helper: FaceRestoreHelper,
    net: nn.Module,
    image_bgr: np.ndarray,
    faces: list[tuple[np.ndarray, np.ndarray]],
    fidelity: float,
    clock: StageClock,
) -> np.ndarray:
    """A whole photo through the official sequence, with detection replaced by the given faces.

    faces: per face, (box x1, y1, x2, y2, score; landmarks 5 x 2 (x, y)), in image pixels.
    clock: receives the time of each stage ("align", "network", "parse + paste").
    Returns the pasted image, BGR uint8, `helper.upscale_factor` times the input size.
    """
    helper.clean_all()
    # The official script's helper (CodeFormer's facelib) enlarges a photo under 512 px on its shorter side before
    # finding faces; facexlib's does not, so it is done here, the given faces scaled with it.
    scale = max(1.0, FACE_SIZE / min(image_bgr.shape[:2]))
    if scale > 1.0:
        image_bgr = cv2.resize(image_bgr, (0, 0), fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    helper.read_image(image_bgr)
    helper.det_faces = [np.asarray(box, np.float32) * np.float32([scale] * 4 + [1]) for box, _ in faces]
    helper.all_landmarks_5 = [np.asarray(points, np.float32) * np.float32(scale) for _, points in faces]
    with clock.stage("align", ""):
        helper.align_warp_face()
    with clock.stage("network", ""):
        for cropped_face in helper.cropped_faces:
            helper.add_restored_face(restore_face_reference(net, cropped_face, fidelity, helper.device).face)
    with clock.stage("parse + paste", ""):
        helper.get_inverse_affine(None)
        return helper.paste_faces_to_input_image(upsample_img=None)
