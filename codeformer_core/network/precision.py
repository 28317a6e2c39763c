"""Arithmetic precision of a network run: exact float32, or reduced precision under `torch.autocast`."""

import contextlib
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Literal

import torch

from ..checks import check_choice
from ..compat import cpu_has_native_bf16

Precision = Literal["float32", "bf16", "fp16"]
PRECISIONS: tuple[Precision, ...] = ("float32", "bf16", "fp16")
FastPrecision = Literal["auto", "bf16", "fp16", "float32"]
FAST_PRECISIONS: tuple[FastPrecision, ...] = ("auto", "bf16", "fp16", "float32")
"""What fast mode decodes in: "auto" is `reduced_precision` of the device."""
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def reduced_precision(device: torch.device | str) -> Precision:
    """The reduced precision fast mode decodes in on `device`: bf16 where the device computes it natively (CUDA
    from Ampere on, CPUs with AMX or AVX512-BF16), float32 elsewhere.

    bf16 keeps float32's range, so the decoder's features cannot overflow; fp16's 65504 is crossed by the CFT
    blocks at high w, and fp16 through the whole network moved code indices (bench/results-cuda.md). Where bf16
    is emulated (older CPUs, GPUs before Ampere) it runs many times slower than float32 (bench/README.md).
    """
    return "bf16" if native_bf16(torch.device(device)) else "float32"


def fast_mode_precision(requested: FastPrecision, device: torch.device | str) -> Precision:
    """What fast mode decodes in on `device`: `reduced_precision` for "auto", else what was asked for."""
    return reduced_precision(device) if requested == "auto" else requested


def precision_summary(decoder: Precision) -> str:
    """What a run computes in, in a few words, given the precision its decoder runs at."""
    if decoder == "float32":
        return "exact float32"
    return f"fast mode (codes in float32, decoder in {decoder})"


def overflow_fallback(precision: Precision, device: torch.device) -> Precision:
    """What to run again in when results at `precision` overflowed: fp16's range ends at 65504, bf16 has
    float32's, so bf16 where the device computes it natively (CUDA from Ampere on, AMX/AVX512-BF16 CPUs), else
    float32."""
    if precision == "fp16" and native_bf16(device):
        return "bf16"
    return "float32"


class DecoderOverflows:
    """The lowest fidelity w at which a network's decoder has overflowed, per precision, so that a later decode at
    that w or above can skip the pass bound to fail.

    The CFT blocks add w * (dec * scale + shift) to the decoder's features, so their size grows with w; where a
    decode at some w left fp16's range, one at a higher w is expected to as well (bench/README.md, "fp16's range
    and the fidelity w"). The skip applies only where the fallback is bf16, about as fast as fp16 on GPUs that have
    it: a GPU without native bf16 falls back to float32, several times slower, so there every batch keeps trying
    fp16 first. Only decodes at or above the lowest such w change, and only in precision; each result still passes
    its own finiteness check.
    """

    def __init__(self) -> None:
        self._lowest_w: dict[Precision, float] = {}

    def start_precision(self, precision: Precision, w: float, device: torch.device) -> Precision:
        """The precision a decode asked to run at `precision` with fidelity `w` on `device` starts in."""
        lowest = self._lowest_w.get(precision)
        if lowest is None or w < lowest:
            return precision
        fallback = overflow_fallback(precision, device)
        return fallback if fallback == "bf16" else precision

    def note(self, precision: Precision, w: float) -> None:
        """A decode at `precision` and fidelity `w` overflowed.

        Unlocked, so that a network still pickles and copies: two requests noting at once can at worst keep the
        higher w, which costs one more fp16 pass later."""
        self._lowest_w[precision] = min(w, self._lowest_w.get(precision, w))

    def lowest_w(self, precision: Precision) -> float | None:
        """The lowest w at which a decode at `precision` has overflowed; None while none has."""
        return self._lowest_w.get(precision)


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
