"""Arithmetic precision of a network run: exact float32, or reduced precision under `torch.autocast`."""

import contextlib
from typing import ContextManager, Literal

import torch

from ..errors import InvalidOptionError

Precision = Literal["float32", "bf16", "fp16"]
PRECISIONS: tuple[Precision, ...] = ("float32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def reduced_precision(device: torch.device | str) -> Precision:
    """The reduced precision to use on `device`: fp16 on CUDA (tensor cores), bf16 elsewhere (CPU autocast's
    type, with float32's range so no overflow)."""
    return "fp16" if torch.device(device).type == "cuda" else "bf16"


def autocast_for(precision: Precision, device: torch.device) -> ContextManager[object]:
    """A context that runs matmuls and convolutions at `precision` on `device`; float32 changes nothing."""
    if precision not in PRECISIONS:
        raise InvalidOptionError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_AUTOCAST_DTYPES[precision])
