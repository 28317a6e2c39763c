"""Arithmetic precision of a network run: exact float32, or reduced precision under `torch.autocast`."""

import contextlib
import threading
from collections.abc import Iterator
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


def overflow_fallback(precision: Precision, device: torch.device) -> Precision:
    """What to run again in when results at `precision` overflowed: fp16's range ends at 65504, bf16 has
    float32's, so bf16 where the device computes it natively (CUDA from Ampere on, AMX/AVX512-BF16 CPUs), else
    float32."""
    if precision == "fp16" and native_bf16(device):
        return "bf16"
    return "float32"


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 in hardware: CUDA from Ampere on, CPUs with AMX or AVX512-BF16."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return cpu_has_native_bf16()


def computing_at(precision: Precision, device: torch.device) -> AbstractContextManager[object]:
    """A context that runs matmuls and convolutions at `precision` on `device`.

    float32 is exact: on CUDA it also keeps cuDNN's convolutions in full float32 (`exact_cuda_convolutions`).
    """
    check_choice("precision", precision, PRECISIONS)
    if precision == "float32":
        return exact_cuda_convolutions() if device.type == "cuda" else contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_AUTOCAST_DTYPES[precision])


_exact_lock = threading.Lock()
_exact_runs = 0
_tf32_before = True


@contextlib.contextmanager
def exact_cuda_convolutions() -> Iterator[None]:
    """cuDNN's float32 convolutions without TF32 while the block runs.

    torch lets cuDNN round float32 convolution inputs to TF32 (a 10-bit mantissa) on Ampere and newer GPUs, which
    moved CodeFormer's outputs 5e-3 x max off the golden vectors, five times their bound (bench/results-cuda.md).
    The switch is global to the process, so overlapping runs on other threads are counted: TF32 comes back only
    when the last one ends, and a run that overlaps one only gets more exact.
    """
    global _exact_runs, _tf32_before
    with _exact_lock:
        if _exact_runs == 0:
            _tf32_before = torch.backends.cudnn.allow_tf32
            torch.backends.cudnn.allow_tf32 = False
        _exact_runs += 1
    try:
        yield
    finally:
        with _exact_lock:
            _exact_runs -= 1
            if _exact_runs == 0:
                torch.backends.cudnn.allow_tf32 = _tf32_before
