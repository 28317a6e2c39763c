"""Which pixels of a restored face go back into the photo.

Two masks, as in the official paste-back: ParseNet's soft face mask (in face-crop pixels) and the eroded, blurred
rectangle of the crop (in output pixels: its margins depend on how big the face lands in the output). Paste-back
always uses the rectangle and, with parsing on, the smaller of the two at each pixel.
"""

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InvalidOptionError
from ..layouts import FACE_SIZE, FaceCrop, Mask
from ..network.batches import crops_to_tensor
from ..network.parsenet import ParseNet
from ..network.precision import Precision, computing_at
from ..weights.checkpoints import load_weights_into, read_state_dict
from ..weights.registry import PARSER_FILE

PASTED_CLASSES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15)
"""ParseNet's 19 labels are background, skin, nose, eyeglasses, left/right eye, left/right brow, left/right ear,
mouth, upper/lower lip, hair, hat, earring, necklace, neck, cloth. The official colormap pastes skin through hair
and earrings; background, hat, necklace, neck and cloth keep the original photo."""

_BLUR_KERNEL = 101  # the official mask is blurred twice with this kernel and sigma, at 512 px
_BLUR_SIGMA = 11
_CLEARED_BORDER = 10  # px of the crop's edge forced to 0, so the crop's border never shows as a seam


class FaceParser:
    """ParseNet (19 classes; `network/parsenet.py`) turning aligned faces into soft paste masks.

    resolution: side the faces are resized to before parsing. 512 is the official size; the network is fully
    convolutional, so a power of two down to 64 runs too, faster and coarser (the mask is blurred at 512 after).
    max_batch: the most faces per forward pass; each face adds its activations (bench/README.md). On a CPU a batch
      gains no speed, since the convolutions already fill the cores; on a GPU a batch takes less time per face
      (bench/README.md).
    """

    def __init__(
        self, network: torch.nn.Module, device: torch.device, resolution: int = FACE_SIZE, max_batch: int = 4
    ) -> None:
        if resolution not in (64, 128, 256, 512):
            raise InvalidOptionError(f"parse resolution must be 64, 128, 256 or 512; got {resolution!r}")
        if max_batch < 1:
            raise InvalidOptionError(f"max_batch must be at least 1; got {max_batch!r}")
        self.network = network
        self.device = device
        self.resolution = resolution
        self.max_batch = max_batch
        self.memory_format = torch.contiguous_format

    def use_channels_last(self) -> "FaceParser":
        """Run ParseNet on N x H x W x C features (oneDNN's faster layout on some CPUs); returns self."""
        self.memory_format = torch.channels_last
        self.network.to(memory_format=torch.channels_last)
        return self

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: torch.device | str = "cpu", *, resolution: int = FACE_SIZE, max_batch: int = 4
    ) -> "FaceParser":
        """Load the official parsing_parsenet.pth. Raises CorruptWeightsError for an unreadable file and
        CheckpointMismatchError for a file made for another network."""
        device = torch.device(device)
        return cls(load_parse_network(path, device), device, resolution=resolution, max_batch=max_batch)

    def face_labels(self, faces: list[FaceCrop]) -> np.ndarray:
        """N x r x r uint8 class indices (r = resolution) for 512 x 512 BGR uint8 faces, in float32."""
        return self._labels(faces, "float32", self.max_batch).cpu().numpy()

    def paste_masks(
        self, faces: list[FaceCrop], precision: Precision = "float32", batch: int | None = None
    ) -> np.ndarray:
        """N x 512 x 512 float32 in [0, 1]: 1 where the restored face replaces the photo (official soft mask).

        precision: what ParseNet runs at. A label that flips in reduced precision sits on a boundary between
        classes, and the mask is blurred over 101 px after, so it moves the soft mask a little, not a face's codes.
        batch: faces per pass, at most max_batch (the pipeline halves it after running out of device memory).
        """
        return soft_face_masks(self._labels(faces, precision, min(batch or self.max_batch, self.max_batch)))

    def _labels(self, faces: list[FaceCrop], precision: Precision, batch: int) -> torch.Tensor:
        """face_labels on the parser's device: on a GPU the masks are made there too."""
        labels = []
        for start in range(0, len(faces), batch):
            resized = [_resize_square(face, self.resolution) for face in faces[start : start + batch]]
            pixels = crops_to_tensor(resized, self.device).contiguous(memory_format=self.memory_format)
            with torch.inference_mode(), computing_at(precision, self.device):
                labels.append(self.network(pixels).argmax(dim=1).to(torch.uint8))
        if not labels:
            return torch.zeros((0, self.resolution, self.resolution), dtype=torch.uint8)
        return torch.cat(labels)


def load_parse_network(path: str | Path, device: torch.device) -> ParseNet:
    """The official parsing_parsenet.pth in our ParseNet, ready for inference on `device`."""
    state_dict = read_state_dict(path)
    with torch.device("meta"):  # no random initialisation: every tensor comes from the file
        network = ParseNet()
    load_weights_into(network, state_dict, path, "ParseNet face parser", PARSER_FILE)
    return network.fold_batch_norms().eval().to(device)


def soft_face_masks(labels: np.ndarray | torch.Tensor) -> np.ndarray:
    """Official post-processing of N x r x r labels: face classes -> 1, blurred twice at 512 px, edges cleared.

    Made where the labels are: a GPU's labels stay there until the masks come back.
    """
    labels = torch.as_tensor(labels)
    if len(labels) == 0:
        return np.zeros((0, FACE_SIZE, FACE_SIZE), np.float32)
    classes = torch.tensor(PASTED_CLASSES, dtype=labels.dtype, device=labels.device)
    with torch.inference_mode():
        pasted = torch.isin(labels, classes).float().unsqueeze(1)
        if pasted.shape[-1] != FACE_SIZE:
            pasted = F.interpolate(pasted, size=(FACE_SIZE, FACE_SIZE), mode="bilinear", align_corners=False)
        for _ in range(2):
            pasted = _official_blur(pasted)
        masks = torch.zeros_like(pasted)
        edge = _CLEARED_BORDER
        masks[..., edge:-edge, edge:-edge] = pasted[..., edge:-edge, edge:-edge]
        return masks.squeeze(1).cpu().numpy()


def _official_blur(masks: torch.Tensor) -> torch.Tensor:
    """cv2.GaussianBlur(kernel 101, sigma 11, its default reflect-101 border) of N x 1 x H x W float32 masks.

    OpenCV's own on a CPU, where it is three times faster than torch's convolutions; on a GPU the same kernel as
    two 1-D convolutions (the values agree within 1e-6).
    """
    if masks.device.type == "cpu":
        blurred = [cv2.GaussianBlur(mask, (_BLUR_KERNEL, _BLUR_KERNEL), _BLUR_SIGMA) for mask in masks[:, 0].numpy()]
        return torch.from_numpy(np.stack(blurred)).unsqueeze(1)
    return separable_blur(masks)


def separable_blur(masks: torch.Tensor) -> torch.Tensor:
    """The official blur as a row and a column convolution, on the masks' device."""
    kernel = torch.from_numpy(cv2.getGaussianKernel(_BLUR_KERNEL, _BLUR_SIGMA).astype(np.float32)).to(masks.device)
    side = _BLUR_KERNEL // 2
    rows = F.conv2d(F.pad(masks, (side, side, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    return F.conv2d(F.pad(rows, (0, 0, side, side), mode="reflect"), kernel.view(1, 1, -1, 1))


def eroded_rectangle_mask(covered: Mask) -> Mask:
    """The official soft rectangle for one face, in output pixels.

    covered: the face crop's square warped into the output (1 inside, 0 outside), already eroded by 2 x upscale
    px so interpolated border pixels are excluded. The result shrinks it by a margin of 1/20 of the face's side
    and blurs over the same width, so a face fades into the photo rather than ending at a hard line, and reaches
    0 at the square's edge. (The official erodes with an even-sized kernel, whose off-centre anchor shifts the
    fade one pixel right and down, past the square; ours is centred.)
    """
    edge = int(float(covered.sum()) ** 0.5) // 20
    centre = cv2.erode(covered, np.ones((2 * edge + 1, 2 * edge + 1), np.uint8))
    return cv2.GaussianBlur(centre, (2 * edge + 1, 2 * edge + 1), 0)


def _resize_square(face: FaceCrop, side: int) -> FaceCrop:
    if face.shape[0] == side:
        return face
    shrinking = face.shape[0] > side
    return cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
