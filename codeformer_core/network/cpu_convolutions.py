"""Faster float32 convolutions for CPU inference: 3 x 3 through NNPACK's Winograd kernels, 1 x 1 as one GEMM.

Why: on a CPU without AVX-512, oneDNN runs a 3 x 3 convolution at ~100-140 GFLOP/s. NNPACK's Winograd transform
(bundled with the standard torch wheels, but only picked by torch for batches of 16 or more) computes the same
convolution with far fewer multiplications, and a 1 x 1 convolution is a plain matrix product, which MKL's GEMM
runs ~1.5x faster than oneDNN's convolution at 256-512 px. Measured on a 2-core AVX2 CPU with torch 2.14.1: the
CodeFormer network's convolutions take half the time, ParseNet's 3 x 3 convolutions ~40% less. The numerical cost
is small: on the golden vectors the logits move by 1.9e-5 and the encoder features by 3.5e-5 (the exact-path
bound is 1e-4), the outputs by 1.3e-5 x max |output|, and every code index is unchanged.

Not everywhere: Real-ESRGAN's 32-channel convolutions ran 1.25x slower through NNPACK, so callers choose the
networks (see models.py). Everything else falls back to the module's own convolution: other devices, dtypes other
than float32, autocast (reduced precision has its own kernels), autograd, and 3 x 3 maps smaller than MIN_SIDE.
"""

import contextvars
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch
from torch import Tensor, nn

from ..errors import InvalidOptionError

T = TypeVar("T")

MIN_SIDE = 32
"""Below this, Winograd's transforms cost more than they save (measured: 16 x 16 maps ran 1.5x slower)."""

KERNELS_VARIABLE = "CODEFORMER_CPU_KERNELS"
""""fast" (the default) or "plain": NNPACK needs a workspace of ~470 MB while it runs the largest convolution, so
plain kernels lower the peak memory of a run by about that much, for ~1.6x the time (bench/results-cpu.md)."""


def fast_kernels_chosen() -> bool:
    """What CODEFORMER_CPU_KERNELS asks for; InvalidOptionError for a value that is neither "fast" nor "plain"."""
    choice = os.environ.get(KERNELS_VARIABLE, "fast").strip().lower()
    if choice not in ("fast", "plain"):
        raise InvalidOptionError(f'{KERNELS_VARIABLE} must be "fast" or "plain"; got {choice!r}')
    return choice == "fast"


def winograd_available() -> bool:
    """Whether this torch build has NNPACK on this CPU. The check also initialises NNPACK, which its
    convolution needs before the first call (otherwise it fails with 'SpatialConvolution_updateOutput failed')."""
    return bool(torch.backends.nnpack.is_available())


def on_own_thread(work: Callable[[], T]) -> T:
    """work()'s result (or its exception), computed on a new thread that ends with it.

    Why: NNPACK keeps a workspace per calling thread, sized for the largest convolution that thread has run
    (~470 MB for 128 channels at 512 px), and frees it only when the thread ends. A web server's worker threads
    live on, so each one that ever restored a face would keep its own; a thread per run keeps none between runs.
    The caller's context variables go along (Gradio finds an event's progress bar through them).
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="codeformer-run") as pool:
        return pool.submit(contextvars.copy_context().run, work).result()


class CpuConv2d(nn.Conv2d):
    """An nn.Conv2d (same parameters, same state_dict keys) that takes the faster kernel when it can."""

    def forward(self, x: Tensor) -> Tensor:
        if not self._plain_float32_inference(x):
            return super().forward(x)
        if self.kernel_size == (1, 1):
            return self._as_matrix_product(x.contiguous())
        if min(x.shape[-2:]) < MIN_SIDE:
            return super().forward(x)
        return torch._nnpack_spatial_convolution(x.contiguous(), self.weight, self.bias, list(self.padding), [1, 1])

    def _as_matrix_product(self, x: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        weight = self.weight.view(self.out_channels, channels)
        out = x.new_empty(batch, self.out_channels, height, width)
        for face, result in zip(x.view(batch, channels, -1), out.view(batch, self.out_channels, -1)):
            if self.bias is None:
                torch.mm(weight, face, out=result)
            else:
                torch.addmm(self.bias[:, None], weight, face, out=result)
        return out

    def _plain_float32_inference(self, x: Tensor) -> bool:
        return (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and x.dim() == 4
            and not torch.is_autocast_enabled("cpu")
            and not (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad))
        )


def use_fast_cpu_convolutions(module: nn.Module) -> int:
    """Swap, in place, every ungrouped stride-1 nn.Conv2d inside `module` that is either 3 x 3 with zero padding
    or 1 x 1 without padding for a CpuConv2d sharing its parameters. Returns how many were swapped: 0 for a module
    off the CPU, where NNPACK is unavailable (the 1 x 1 gain alone is too small to be worth a second code path),
    or when plain kernels are chosen."""
    on_cpu = all(parameter.device.type == "cpu" for parameter in module.parameters())
    if not (on_cpu and fast_kernels_chosen() and winograd_available()):
        return 0
    swapped = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Conv2d and _suits(child):
                setattr(parent, name, _as_cpu_conv(child))
                swapped += 1
    return swapped


def _suits(conv: nn.Conv2d) -> bool:
    plain = conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1 and not isinstance(conv.padding, str)
    three = conv.kernel_size == (3, 3) and conv.padding_mode == "zeros"
    one = conv.kernel_size == (1, 1) and conv.padding == (0, 0)
    return plain and (three or one)


def _as_cpu_conv(conv: nn.Conv2d) -> CpuConv2d:
    with torch.device("meta"):  # no throwaway initialisation: the parameters are the original module's
        swapped = CpuConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding,
                            bias=conv.bias is not None)
    swapped.weight = conv.weight
    swapped.bias = conv.bias
    return swapped.train(conv.training)
