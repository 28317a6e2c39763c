"""Arithmetic precision of a network run: exact float32, or reduced precision under `torch.autocast`."""

import contextlib
from contextlib import AbstractContextManager
from typing import Literal

import torch

from ..compat import cpu_has_native_bf16
from ..options import check_choice

Precision = Literal["float32", "bf16", "fp16"]
PRECISIONS: tuple[Precision, ...] = ("float32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def reduced_precision(device: torch.device | str) -> Precision:
    """The reduced precision worth using on `device`: fp16 on CUDA; bf16 on a CPU with native bf16 units
    (AVX512-BF16 or AMX); float32 on other CPUs, where oneDNN emulates bf16 and a convolution runs many times
    slower than in float32 (bench/README.md)."""
    if torch.device(device).type == "cuda":
        return "fp16"
    return "bf16" if cpu_has_native_bf16() else "float32"


def autocast_for(precision: Precision, device: torch.device) -> AbstractContextManager[object]:
    """A context that runs matmuls and convolutions at `precision` on `device`; float32 changes nothing."""
    check_choice("precision", precision, PRECISIONS)
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_AUTOCAST_DTYPES[precision])
