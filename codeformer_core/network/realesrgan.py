"""Real-ESRGAN x2plus: the optional upsampler for the background (and, with face upsampling, the restored faces).

The network is basicsr's RRDBNet in the x2plus configuration; realesrgan's `RealESRGANer` runs it tile by tile
(400 px tiles with 40 px of overlap, as the official script) so memory stays bounded on large photos.
"""

import threading
from pathlib import Path

import numpy as np
import torch

from ..compat import register_torchvision_alias
from ..errors import CheckpointMismatchError, InvalidImageError, InvalidOptionError
from ..layouts import BGRImage
from ..weights.checkpoints import load_weights_into, read_state_dict
from ..weights.registry import REALESRGAN_FILE

register_torchvision_alias()  # basicsr and realesrgan import a module torchvision removed

from basicsr.archs.rrdbnet_arch import RRDBNet  # noqa: E402
from realesrgan import RealESRGANer  # noqa: E402

NETWORK_SCALE = 2
DEFAULT_TILE = 400
TILE_PAD = 40  # official: overlap that hides tile seams
MAX_OUTSCALE = 4


def x2plus_network() -> RRDBNet:
    """An RRDBNet shaped as RealESRGAN_x2plus.pth's network, initialised as torch does (call it under
    `torch.device("meta")` to skip that when a checkpoint fills it)."""
    return RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, scale=NETWORK_SCALE)


class BackgroundUpsampler:
    """Upsamples BGR uint8 images with Real-ESRGAN x2plus; one call at a time (RealESRGANer keeps per-call state)."""

    def __init__(self, upsampler: RealESRGANer, tile: int) -> None:
        self._upsampler = upsampler
        self.tile = tile
        self._lock = threading.Lock()

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: torch.device | str = "cpu", tile: int = DEFAULT_TILE
    ) -> "BackgroundUpsampler":
        """Load the official RealESRGAN_x2plus.pth.

        tile: tile side in input pixels, an even number (the x2 network works on pixel pairs), or 0 for one pass
        over the whole image. Half precision is used on CUDA only (CPUs gain nothing from it).
        Raises CorruptWeightsError for an unreadable file and CheckpointMismatchError for another network's file.
        """
        if tile < 0 or tile % 2:
            raise InvalidOptionError(f"tile must be 0 (no tiling) or an even number of pixels; got {tile!r}")
        device = torch.device(device)
        state_dict = read_state_dict(path)
        with torch.device("meta"):  # no random initialisation: every tensor comes from the file
            model = x2plus_network()
        load_weights_into(model, state_dict, path, "Real-ESRGAN x2plus network", REALESRGAN_FILE)
        # Our strict load gives a mismatch its clear message; RealESRGANer's public constructor then loads the
        # file once more into the same tensors (no second network, no random initialisation), from its
        # `params_ema` or `params` entry only.
        try:
            upsampler = RealESRGANer(
                scale=NETWORK_SCALE, model_path=str(path), model=model, tile=tile, tile_pad=TILE_PAD, pre_pad=0,
                half=device.type == "cuda", device=device,
            )
        except KeyError as error:
            raise CheckpointMismatchError(
                f"{path} holds its tensors without the 'params_ema' or 'params' entry that Real-ESRGAN reads. "
                f"It needs the official {REALESRGAN_FILE}."
            ) from error
        return cls(upsampler, tile)

    @property
    def network(self) -> torch.nn.Module:
        """The loaded RRDBNet, on its device."""
        return self._upsampler.model

    def upsample(self, image: BGRImage, outscale: float) -> BGRImage:
        """`image` enlarged by `outscale` (0 < outscale <= 4): the network's x2, then a Lanczos resize to
        (int(w * outscale), int(h * outscale)) when outscale is not 2. BGR uint8 in and out."""
        if not 0 < outscale <= MAX_OUTSCALE:
            raise InvalidOptionError(f"outscale must be above 0 and at most {MAX_OUTSCALE}; got {outscale!r}")
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InvalidImageError(
                f"the background upsampler takes H x W x 3 uint8 BGR images; got {image.dtype} {image.shape}"
            )
        with self._lock:
            output, _ = self._upsampler.enhance(image, outscale=outscale)
        return output
