"""The golden vectors of the shared golden folder (`shared_data.golden_dir`, see its README): weight fill rule,
inputs and reference arrays.

Tests and benches use `write_official_checkpoint` to get a checkpoint in the published format without a download.
"""

import hashlib
import json
import math
from functools import cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .shared_data import golden_dir

SALT = "codeformer-golden-"


def manifest(task: str) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every tensor of the published state_dict for `task`, in checkpoint order."""
    entries = json.loads((golden_dir() / f"{task}.keys.json").read_text())
    return [(name, tuple(shape)) for name, shape in entries]


def golden_tensor(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The README's fill rule: uniform values seeded by the tensor's name, scaled by fan-in or kind."""
    seed = int.from_bytes(hashlib.sha256((SALT + name).encode()).digest()[:8], "little")
    values = 2.0 * np.random.Generator(np.random.PCG64(seed)).random(math.prod(shape)) - 1.0
    if len(shape) >= 2:
        values *= math.sqrt(3.0 / math.prod(shape[1:]))
    elif name.endswith("weight"):
        values = 1.0 + 0.1 * values
    else:
        values = 0.1 * values
    return torch.from_numpy(values.reshape(shape).astype(np.float32))


def golden_state_dict(task: str) -> dict[str, torch.Tensor]:
    """A full state_dict for `task` filled by the golden rule (fresh tensors on each call)."""
    return {name: golden_tensor(name, shape) for name, shape in manifest(task)}


def write_official_checkpoint(task: str, path: Path) -> Path:
    """Write golden weights for `task` to `path` the way the published files are stored: {"params_ema": state_dict}."""
    path = Path(path)
    torch.save({"params_ema": golden_state_dict(task)}, path)
    return path


def golden_input(task: str) -> torch.Tensor:
    """The task's input face as 1 x 3 x 512 x 512 float32 in [-1, 1], RGB (the PNG holds OpenCV's BGR written
    as a normal RGB file, so Pillow reads R, G, B)."""
    rgb = np.asarray(Image.open(golden_dir() / f"{task}_input.png").convert("RGB"), dtype=np.float32)
    scaled = (rgb / 255.0 - 0.5) / 0.5
    return torch.from_numpy(scaled).permute(2, 0, 1).unsqueeze(0).contiguous()


@cache
def reference_arrays(task: str) -> dict[str, np.ndarray]:
    """The reference implementation's outputs for `task` (keys: logits, idx, lq_feat, out_w<w>, ...)."""
    with np.load(golden_dir() / f"{task}.npz") as arrays:
        return dict(arrays)
