"""Aligned faces through the CodeFormer network: crops to tensors, encode once, decode per fidelity.

Faces go through in batches: on a GPU a batch of several faces fills the device (per-face time keeps falling up
to 16 faces, bench/results-cuda.md); on the CPU batching gains nothing and only multiplies the decoder's
activation memory (~130 MB per 512x512x128 feature map per face), so a batch is one face there.
"""

from collections.abc import Iterator

import numpy as np
import torch

from ..layouts import FaceCrop
from . import EncodedFaces, FaceNetwork, Precision

LARGE_GPU_GIB = 64
"""From this much GPU memory on, a network pass takes 16 faces: the most requests a GPU runs at once
(hardware.MAX_GPU_CONCURRENCY), each with a float32 pass of 16, still fit beside the models (bench/README.md)."""


def batch_size_for(device: torch.device) -> int:
    """Faces per network pass on `device`: 1 on a CPU, 4 on a GPU, 16 on a GPU of LARGE_GPU_GIB or more."""
    if device.type != "cuda":
        return 1
    memory_gib = torch.cuda.get_device_properties(device).total_memory / 2**30
    return 16 if memory_gib >= LARGE_GPU_GIB else 4


def crops_to_tensor(crops: list[FaceCrop], device: torch.device) -> torch.Tensor:
    """BGR uint8 H x W crops (512 x 512 for CodeFormer) -> N x 3 x H x W float32 RGB in [-1, 1] on `device`.

    The crops travel as uint8 and are converted where they land: a quarter of float32's bytes to copy, and on a
    GPU the arithmetic is the GPU's.
    """
    pixels = torch.from_numpy(np.stack(crops)).to(device)
    rgb = pixels.flip(3).permute(0, 3, 1, 2).float()
    return (rgb / 127.5 - 1.0).contiguous()


def tensor_to_crops(output: torch.Tensor) -> list[FaceCrop]:
    """N x 3 x H x W RGB in [-1, 1] (unclamped) -> BGR uint8 crops, rounded as the reference's tensor2img does;
    converted on the output's device, so only uint8 crops come back from a GPU."""
    pixels = ((output.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    bgr = pixels.flip(1).permute(0, 2, 3, 1).contiguous().cpu().numpy()
    return list(bgr)


def _batches(count: int, size: int) -> Iterator[slice]:
    for start in range(0, count, size):
        yield slice(start, min(start + size, count))


def encode_faces(
    net: FaceNetwork, crops: list[FaceCrop], *, adain: bool, batch: int
) -> list[EncodedFaces]:
    """The w-independent half of the network, one EncodedFaces per batch of at most `batch` faces.

    Always float32, fast mode or not: the transformer's top-1 code is a decision, and reduced precision there
    picks other codes (a different face, not a noisier one), so fast mode's codes are exactly float32's.
    """
    device = net.device
    return [
        net.encode(crops_to_tensor(crops[part], device), adain=adain, precision="float32")
        for part in _batches(len(crops), batch)
    ]


def decode_faces(
    net: FaceNetwork, encoded: list[EncodedFaces], *, fidelity: float, precision: Precision, batch: int
) -> list[FaceCrop]:
    """The decoder at fidelity w and `precision` for every face encoded earlier, at most `batch` faces per pass."""
    faces: list[FaceCrop] = []
    for part in encoded:
        for faces_in_pass in _batches(len(part), batch):
            output = net.decode(part.select(faces_in_pass), w=fidelity, precision=precision)
            faces.extend(tensor_to_crops(output))
    return faces
