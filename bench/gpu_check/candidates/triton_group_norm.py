"""The VQGAN's GroupNorm, and GroupNorm then swish, on reduced-precision CUDA features as Triton kernels.

Why: in one fp16 pass of 4 faces on an H100, torch's GroupNorm took a third of the GPU time (gpu_profile.py's
top kernels, bench/README.md): its statistics kernel gives each (face, group) row one thread block, so 4
faces fill 128 blocks on 132 SMs, each reading up to half a million values alone; the normalisation and the swish
after it read and write every feature map once more each. Here:

- the statistics of a row are split over enough programs to fill the GPU, each keeping a count, mean and sum of
  squared deviations (merged with Chan's formula: no E[x^2] - E[x]^2 cancellation), merged per row once more;
- one elementwise pass normalises, applies the affine and, for a ResBlock, the swish, in float32, writing the
  features' own precision;
- N x C x H x W and channels_last (N x H x W x C) features each have kernels that read memory in order, so the
  decoder can run channels_last, as cuDNN's fp16 convolutions want it, without transposes around every norm.

`use_triton_group_norms(net)` swaps them into a network; they run only where `AutocastGroupNorm` would normalise
reduced-precision features in their own precision (on CUDA, under autocast), so float32 stays torch's exact path.
Triton compiles each kernel at its first call (once per dtype and shape class; kept in Triton's cache on disk).
Three launches per norm, each from Python, cost the host more than torch's one: replayed from CUDA graphs they
cost nothing (the GPU check times both).
Under `TRITON_INTERPRET=1` Triton runs the same kernels on the CPU, slowly: the tests check them that way.
"""

# Kernel arguments stay unannotated: Triton reads an argument's annotation as its own type and specialisation hint.
# ruff: noqa: ANN001, ANN202

import functools
import os

import torch
import triton
import triton.language as tl
from torch import Tensor, nn

from codeformer_core.network.swapping import swap_modules
from codeformer_core.network.vqgan import AutocastGroupNorm

STATISTICS_BLOCK = 4096
"""Values each statistics program reads per step."""
NORMALIZE_BLOCK = 1024
"""Values of one channel plane each N x C x H x W normalisation program writes."""
TILE_VALUES = 4096
"""Values (positions x channels) of one channels_last tile."""
PROGRAMS_PER_SM = 4
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"


@triton.jit
def _merge(count, mean, m2, block_count, block_mean, block_m2):
    """Chan's merge of two (count, mean, sum of squared deviations) summaries."""
    total = count + block_count
    delta = block_mean - mean
    share = block_count / total
    return total, mean + delta * share, m2 + block_m2 + delta * delta * count * share


@triton.jit
def _row_moments_nchw(x_ptr, part_ptr, row_len, steps, splits, BLOCK: tl.constexpr):
    """Program (row, split): the summary of the `steps` x BLOCK values from split * steps * BLOCK on of row `row`
    (one face's group, its channels' planes one after another)."""
    row = tl.program_id(0)
    split = tl.program_id(1)
    base = x_ptr + row.to(tl.int64) * row_len
    start = split * steps * BLOCK
    count = 0.0
    mean = 0.0
    m2 = 0.0
    for step in range(steps):  # a fixed count: the last split's last steps may read nothing
        index = start + step * BLOCK + tl.arange(0, BLOCK)
        valid = index < row_len
        x = tl.load(base + index, mask=valid, other=0.0).to(tl.float32)
        block_count = tl.sum(valid.to(tl.float32), axis=0)
        block_mean = tl.sum(x, axis=0) / tl.maximum(block_count, 1.0)
        deviation = tl.where(valid, x - block_mean, 0.0)
        count, mean, m2 = _merge(count, mean, m2, block_count, block_mean, tl.sum(deviation * deviation, axis=0))
    out = part_ptr + (row * splits + split) * 3
    tl.store(out, count)
    tl.store(out + 1, mean)
    tl.store(out + 2, m2)


@triton.jit
def _row_moments_nhwc(x_ptr, part_ptr, positions, steps, splits, C: tl.constexpr, G: tl.constexpr,
                      ROWS: tl.constexpr):
    """Program (face, split): the summaries of every group over the `steps` x ROWS positions from
    split * steps * ROWS on of one face, read as tiles of ROWS positions x all C channels."""
    face = tl.program_id(0)
    split = tl.program_id(1)
    base = x_ptr + face.to(tl.int64) * positions * C
    start = split * steps * ROWS
    channels = tl.arange(0, C)
    count = 0.0
    mean = tl.zeros([G], dtype=tl.float32)
    m2 = tl.zeros([G], dtype=tl.float32)
    for step in range(steps):
        rows = start + step * ROWS + tl.arange(0, ROWS)
        valid = rows < positions
        x = tl.load(base + rows[:, None] * C + channels[None, :], mask=valid[:, None], other=0.0).to(tl.float32)
        grouped = tl.reshape(x, [ROWS, G, C // G])
        block_count = tl.sum(valid.to(tl.float32), axis=0) * (C // G)
        block_mean = tl.sum(tl.sum(grouped, axis=2), axis=0) / tl.maximum(block_count, 1.0)
        deviation = tl.where(valid[:, None, None], grouped - block_mean[None, :, None], 0.0)
        block_m2 = tl.sum(tl.sum(deviation * deviation, axis=2), axis=0)
        count, mean, m2 = _merge(count, mean, m2, block_count, block_mean, block_m2)
    out = part_ptr + ((face * G + tl.arange(0, G)) * splits + split) * 3
    tl.store(out, tl.full([G], 0.0, tl.float32) + count)
    tl.store(out + 1, mean)
    tl.store(out + 2, m2)


@triton.jit
def _row_statistics(part_ptr, stats_ptr, splits, eps, SPLITS: tl.constexpr):
    """Program row: the row's mean and 1 / sqrt(variance + eps) from its splits' summaries."""
    row = tl.program_id(0)
    split = tl.arange(0, SPLITS)
    valid = split < splits
    part = part_ptr + (row * splits + split) * 3
    count = tl.load(part, mask=valid, other=0.0)
    mean_part = tl.load(part + 1, mask=valid, other=0.0)
    total = tl.sum(count, axis=0)
    mean = tl.sum(count * mean_part, axis=0) / total
    deviation = tl.where(valid, mean_part - mean, 0.0)
    m2 = tl.sum(tl.load(part + 2, mask=valid, other=0.0), axis=0) + tl.sum(count * deviation * deviation, axis=0)
    tl.store(stats_ptr + row * 2, mean)
    tl.store(stats_ptr + row * 2 + 1, 1.0 / tl.sqrt(m2 / total + eps))


@triton.jit
def _swish_if(y, SWISH: tl.constexpr):
    if SWISH:
        y = y * tl.sigmoid(y)
    return y


@triton.jit
def _normalize_nchw(x_ptr, y_ptr, stats_ptr, weight_ptr, bias_ptr, plane_len, channels, group_channels, groups,
                    SWISH: tl.constexpr, BLOCK: tl.constexpr):
    """Program (plane, block): BLOCK values of channel plane `plane` (face * C + channel)."""
    plane = tl.program_id(0)
    channel = plane % channels
    row = (plane // channels) * groups + channel // group_channels
    mean = tl.load(stats_ptr + row * 2)
    scale = tl.load(stats_ptr + row * 2 + 1) * tl.load(weight_ptr + channel).to(tl.float32)
    shift = tl.load(bias_ptr + channel).to(tl.float32) - mean * scale
    index = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    valid = index < plane_len
    offset = plane.to(tl.int64) * plane_len + index
    x = tl.load(x_ptr + offset, mask=valid, other=0.0).to(tl.float32)
    y = _swish_if(x * scale + shift, SWISH)
    tl.store(y_ptr + offset, y.to(y_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _normalize_nhwc(x_ptr, y_ptr, stats_ptr, weight_ptr, bias_ptr, positions, C: tl.constexpr, G: tl.constexpr,
                    SWISH: tl.constexpr, ROWS: tl.constexpr):
    """Program (face, block): ROWS positions x all C channels of one face."""
    face = tl.program_id(0)
    channels = tl.arange(0, C)
    row = face * G + channels // (C // G)
    mean = tl.load(stats_ptr + row * 2)
    scale = tl.load(stats_ptr + row * 2 + 1) * tl.load(weight_ptr + channels).to(tl.float32)
    shift = tl.load(bias_ptr + channels).to(tl.float32) - mean * scale
    rows = tl.program_id(1) * ROWS + tl.arange(0, ROWS)
    valid = rows[:, None] < positions
    offset = face.to(tl.int64) * positions * C + rows[:, None] * C + channels[None, :]
    x = tl.load(x_ptr + offset, mask=valid, other=0.0).to(tl.float32)
    y = _swish_if(x * scale[None, :] + shift[None, :], SWISH)
    tl.store(y_ptr + offset, y.to(y_ptr.dtype.element_ty), mask=valid)


def group_norm(x: Tensor, groups: int, weight: Tensor, bias: Tensor, eps: float, swish: bool = False) -> Tensor:
    """GroupNorm of x (N x C x H x W, in memory as such or channels_last), then swish when `swish`; statistics and
    arithmetic in float32, output in x's dtype and layout (channels_last only where C is a power of two, as in
    CodeFormer: else N x C x H x W). weight and bias: C values, any float dtype."""
    faces, channels, height, width = x.shape
    if channels % groups:
        raise ValueError(f"GroupNorm: {channels} channels do not split into {groups} groups")
    positions = height * width
    # A channels_last tile spans all channels: a power of two, as Triton's ranges ask.
    power_of_two = (channels & (channels - 1)) == 0
    channels_last = power_of_two and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    if not channels_last:
        x = x.contiguous()
    y = torch.empty_like(x)
    rows = faces * groups
    stats = torch.empty(rows, 2, dtype=torch.float32, device=x.device)
    if channels_last:
        tile_rows = max(1, TILE_VALUES // channels)
        steps, splits = _splits(positions, tile_rows, faces, x.device)
        parts = torch.empty(rows, splits, 3, dtype=torch.float32, device=x.device)
        _row_moments_nhwc[(faces, splits)](x, parts, positions, steps, splits, C=channels, G=groups, ROWS=tile_rows)
    else:
        row_len = positions * channels // groups
        steps, splits = _splits(row_len, STATISTICS_BLOCK, rows, x.device)
        parts = torch.empty(rows, splits, 3, dtype=torch.float32, device=x.device)
        _row_moments_nchw[(rows, splits)](x, parts, row_len, steps, splits, BLOCK=STATISTICS_BLOCK)
    _row_statistics[(rows,)](parts, stats, splits, eps, SPLITS=triton.next_power_of_2(splits))
    if channels_last:
        grid = (faces, triton.cdiv(positions, tile_rows))
        _normalize_nhwc[grid](x, y, stats, weight, bias, positions, C=channels, G=groups, SWISH=swish, ROWS=tile_rows)
    else:
        grid = (faces * channels, triton.cdiv(positions, NORMALIZE_BLOCK))
        _normalize_nchw[grid](x, y, stats, weight, bias, positions, channels, channels // groups, groups,
                              SWISH=swish, BLOCK=NORMALIZE_BLOCK)
    return y


def _splits(length: int, step: int, rows: int, device: torch.device) -> tuple[int, int]:
    """(steps per program, programs per row) for rows of `length` values read `step` at a time: enough programs
    in all to fill the device."""
    steps = triton.cdiv(length, step)
    wanted = triton.cdiv(PROGRAMS_PER_SM * _multiprocessors(device), rows)
    steps_per_program = triton.cdiv(steps, max(1, min(wanted, steps)))
    return steps_per_program, triton.cdiv(steps, steps_per_program)


@functools.cache
def _multiprocessors(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 2  # Triton's interpreter: few programs, as each runs in numpy


class TritonGroupNorm(AutocastGroupNorm):
    """An AutocastGroupNorm (same parameters and state_dict keys) whose reduced-precision path runs the Triton
    kernels above."""

    def forward(self, x: Tensor) -> Tensor:
        if not self._runs_triton(x):
            return super().forward(x)
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def with_swish(self, x: Tensor) -> Tensor:
        if not self._runs_triton(x):
            return super().with_swish(x)
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps, swish=True)

    def _runs_triton(self, x: Tensor) -> bool:
        return (x.is_cuda or INTERPRETED) and self.normalizes_reduced(x) and x.dim() == 4


def use_triton_group_norms(net: nn.Module) -> int:
    """Swap, in place, every AutocastGroupNorm inside `net` for a TritonGroupNorm; returns how many were swapped."""

    def make(norm: nn.Module) -> nn.Module:
        return TritonGroupNorm(norm.num_groups, norm.num_channels, eps=norm.eps, affine=norm.affine)

    return swap_modules(net, lambda module: type(module) is AutocastGroupNorm, make)
