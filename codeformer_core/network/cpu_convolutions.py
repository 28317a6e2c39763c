"""Faster float32 convolutions for CPU inference: 3 x 3 through NNPACK's Winograd kernels, 1 x 1 as one GEMM.

Why: NNPACK's Winograd transform (bundled with the standard torch wheels, but only picked by torch for batches of 16
or more) computes a 3 x 3 convolution with far fewer multiplications, and a 1 x 1 convolution is a plain matrix
product, which MKL's GEMM runs faster than oneDNN's convolution; on CPUs without AVX-512 the networks' convolutions
take about half the time (bench/README.md, "Measurements behind the engine's constants"). The golden tests bound
the numerical cost: every code index unchanged, logits and features well within the exact path's bound.

Not everywhere: on CPUs with AVX-512 oneDNN's kernels were faster, so the engine uses these only where the probe
chose them (`cpu_kernels.py`); Real-ESRGAN's 32-channel convolutions ran slower through NNPACK, so callers choose the
networks (see pipeline/models.py). Where this torch has no NNPACK (`compat.nnpack_available`), nothing is
swapped. Everything else falls back to the module's own convolution: other devices, dtypes other
than float32, autocast (reduced precision has its own kernels), autograd, and 3 x 3 maps smaller than MIN_SIDE.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..compat import nnpack_available, nnpack_convolution
from .swapping import swap_modules

MIN_SIDE = 32
"""Below this, Winograd's transforms cost more than they save."""

WINOGRAD_TILE = 6
"""Output rows and columns per Winograd tile: NNPACK's F(6 x 6, 3 x 3) transforms 8 x 8 input tiles."""
WINOGRAD_TILE_INPUT = WINOGRAD_TILE + 2
FLOAT32_BYTES = 4

WORKSPACE_LIMIT = 128 * 2**20
"""Bytes of NNPACK workspace a convolution may take before it runs in bands of output rows. Why: the workspace
holds the transforms of every input and output tile at once (64 floats per tile and channel): 484 MB for 128 -> 128
channels at 512 px, on top of the activations, and it stays allocated, at its largest, for the calling thread's
life. Bands move results by Winograd rounding only; their speed cost is not settled (see bench/README.md before
lowering or raising this)."""


class CpuConv2d(nn.Conv2d):
    """An nn.Conv2d (same parameters, same state_dict keys) that takes the faster kernel when it can."""

    def forward(self, x: Tensor) -> Tensor:
        if not self._plain_float32_inference(x):
            return super().forward(x)
        if self.kernel_size == (1, 1):
            return self._as_matrix_product(x.contiguous())
        if min(x.shape[-2:]) < MIN_SIDE:
            return super().forward(x)
        return self._winograd_in_bands(x)

    def _winograd_in_bands(self, x: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        pad_rows, pad_columns = self.padding
        out_height, out_width = height + 2 * pad_rows - 2, width + 2 * pad_columns - 2
        tile_rows = -(-out_height // WINOGRAD_TILE)
        bands = -(-tile_rows * self._workspace_per_tile_row(batch, out_width) // WORKSPACE_LIMIT)
        if bands <= 1:
            return nnpack_convolution(x.contiguous(), self.weight, self.bias, self.padding)
        band_height = -(-tile_rows // bands) * WINOGRAD_TILE
        out = x.new_empty(batch, self.out_channels, out_height, out_width)
        for top in range(0, out_height, band_height):
            bottom = min(top + band_height, out_height)
            # Input rows first..last (exclusive) give output rows top..bottom; rows outside the input are padding.
            first, last = top - pad_rows, bottom - pad_rows + 2
            rows = x[:, :, max(first, 0) : min(last, height)]
            rows = F.pad(rows, (0, 0, max(-first, 0), max(last - height, 0))).contiguous()
            out[:, :, top:bottom] = nnpack_convolution(rows, self.weight, self.bias, (0, pad_columns))
        return out

    def _workspace_per_tile_row(self, batch: int, out_width: int) -> int:
        tiles = batch * -(-out_width // WINOGRAD_TILE)
        return tiles * WINOGRAD_TILE_INPUT**2 * (self.in_channels + self.out_channels) * FLOAT32_BYTES

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
    off the CPU, or where NNPACK is unavailable (the 1 x 1 gain alone is too small to be worth a second code
    path)."""
    on_cpu = all(parameter.device.type == "cpu" for parameter in module.parameters())
    if not (on_cpu and nnpack_available()):
        return 0
    return swap_modules(module, _suits, _as_cpu_conv)


def _suits(conv: nn.Module) -> bool:
    if type(conv) is not nn.Conv2d:
        return False
    plain = conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1 and not isinstance(conv.padding, str)
    three = conv.kernel_size == (3, 3) and conv.padding_mode == "zeros"
    one = conv.kernel_size == (1, 1) and conv.padding == (0, 0)
    return plain and (three or one)


def _as_cpu_conv(conv: nn.Conv2d) -> CpuConv2d:
    return CpuConv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding, bias=conv.bias is not None
    )
