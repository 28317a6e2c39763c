"""Named aliases for the array layouts passed between stages.

Images are numpy arrays in OpenCV's channel order unless the name says otherwise, because every stage
(detection, warping, paste-back, Real-ESRGAN) works in BGR.
"""

from typing import Literal

import numpy as np
import numpy.typing as npt

FACE_SIZE = 512
"""Side of an aligned face crop, in pixels: the CodeFormer network's input and output size."""

BGRImage = npt.NDArray[np.uint8]
"""H x W x 3, uint8, channel order B, G, R."""

FaceCrop = npt.NDArray[np.uint8]
"""512 x 512 x 3, uint8, BGR: a face aligned to the FFHQ 5-point template."""

Mask = npt.NDArray[np.float32]
"""H x W, float32 in [0, 1]."""

Landmarks5 = npt.NDArray[np.float32]
"""5 x 2, float32, (x, y) in image pixels: left eye, right eye, nose tip, left mouth corner, right mouth corner
(left/right as seen in the image)."""

Box = npt.NDArray[np.float32]
"""4, float32: x1, y1, x2, y2 in image pixels."""

Affine = npt.NDArray[np.float64]
"""2 x 3 affine matrix as used by `cv2.warpAffine`."""

Task = Literal["restore", "colorize", "inpaint"]
TASKS: tuple[Task, ...] = ("restore", "colorize", "inpaint")

FIXED_FIDELITY: dict[Task, float] = {"colorize": 0.0, "inpaint": 1.0}
"""The w colorize and inpaint always run at, as the official scripts run them; restore takes any w in [0, 1]."""


def task_adain(task: Task) -> bool:
    """Whether the task's network runs AdaIN: the inpainting model was trained without it, the other two with it."""
    return task != "inpaint"


def task_fidelity(task: Task, fidelity: float) -> float:
    """The w the task's network runs at when `fidelity` is asked for (see FIXED_FIDELITY)."""
    return FIXED_FIDELITY.get(task, float(fidelity))
