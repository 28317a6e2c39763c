"""The VQGAN of CodeFormer's stage I: encoder, codebook and generator (decoder).

Block order and attribute names follow the published checkpoints (`encoder.blocks.<i>`, `quantize.embedding`,
`generator.blocks.<i>`), so a state_dict loads with `strict=True`. Feature maps are N x C x H x W float tensors;
the latent is N x 256 x 16 x 16 for a 512 x 512 face.
"""

from collections.abc import Callable, Collection, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .reduced_weights import reduced_parameters

GROUPS = 32
NORM_EPS = 1e-6


STATISTICS_CHUNK_BYTES = 4 << 20
"""Bytes of a channels_last feature map that PreciseGroupNorm sums at a time: the square of a chunk is a small
temporary, not one the size of the map, and few enough chunks keep the per-call overhead low."""


def group_norm(channels: int, precise: bool = False) -> "AutocastGroupNorm":
    """The VQGAN's normalisation: GroupNorm with 32 groups and eps 1e-6 (`precise`: PreciseGroupNorm)."""
    kind = PreciseGroupNorm if precise else AutocastGroupNorm
    return kind(num_groups=GROUPS, num_channels=channels, eps=NORM_EPS, affine=True)


class AutocastGroupNorm(nn.GroupNorm):
    """GroupNorm that, under autocast, normalises reduced-precision features in their own precision.

    Autocast runs every GroupNorm in float32, in and out, so each 512 x 512 feature map would be read and written
    at twice the width and cast back for the next convolution; the norms then took more GPU time than the
    convolutions (bench/results-cuda.md). The kernels still accumulate the statistics in float32. Outside
    autocast, and for float32 input, it is plain GroupNorm.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not self.normalizes_reduced(x):
            return super().forward(x)
        weight, bias = reduced_parameters(self, x.dtype, self.weight, self.bias)
        with torch.autocast(x.device.type, enabled=False):
            return F.group_norm(x, self.num_groups, weight, bias, self.eps)

    def with_swish(self, x: Tensor) -> Tensor:
        """swish(GroupNorm(x)), what a ResBlock computes before each convolution (one pass in some subclasses)."""
        return F.silu(self(x), inplace=True)

    @staticmethod
    def normalizes_reduced(x: Tensor) -> bool:
        """Whether x is reduced-precision features under autocast, normalised in their own precision."""
        return x.dtype != torch.float32 and torch.is_autocast_enabled(x.device.type)


class PreciseGroupNorm(AutocastGroupNorm):
    """The encoder's GroupNorm: on channels_last float32 features, each group's statistics are summed a cache-sized
    chunk at a time and combined in float64; otherwise AutocastGroupNorm.

    Why: torch's channels_last GroupNorm kernel runs each group's sums (up to 2 x 512 x 512 values) through one
    float32 accumulator, which moved the encoder's latent 2e-4 from the golden vectors (the bound is 1e-4), while
    the default layout, accurate, makes every convolution reorder its input and output (bench/README.md). With
    these sums the channels_last encoder stays within the golden bounds.
    """

    def forward(self, x: Tensor) -> Tensor:
        plain_float32 = x.dtype == torch.float32 and not torch.is_autocast_enabled(x.device.type)
        if not (plain_float32 and _channels_last_only(x)):
            return super().forward(x)
        scale, shift = self._channels_last_affine(x)
        return torch.addcmul(shift, x, scale)

    def _channels_last_affine(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per face and channel, the scale and shift that normalise x's groups and apply the affine parameters."""
        n, c, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(n, h * w, c)  # a view of channels_last memory
        step = max(1, STATISTICS_CHUNK_BYTES // (n * c * x.element_size()))
        sums = torch.zeros(2, n, c, dtype=torch.float64, device=x.device)
        for chunk in rows.split(step, dim=1):
            sums[0] += chunk.sum(1)
            sums[1] += (chunk * chunk).sum(1)
        per_group = c // self.num_groups
        mean, mean_square = sums.view(2, n, self.num_groups, per_group).sum(3) / (h * w * per_group)
        rstd = (mean_square - mean.square()).clamp_min(0).add(self.eps).rsqrt()
        scale = rstd.repeat_interleave(per_group, dim=1) * self.weight
        shift = self.bias - mean.repeat_interleave(per_group, dim=1) * scale
        return scale.float().view(n, c, 1, 1), shift.float().view(n, c, 1, 1)


def _channels_last_only(x: Tensor) -> bool:
    """Whether x is channels_last and not also contiguous (a 1 x 1 map or a single channel is both)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


class ResBlock(nn.Module):
    """Pre-activation residual block: (GroupNorm, swish, 3x3 conv) twice, plus a 1x1 shortcut if widths differ.

    `precise`: the encoder's blocks, normalised by PreciseGroupNorm.
    """

    def __init__(self, in_channels: int, out_channels: int, precise: bool = False) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels, precise)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm2 = group_norm(out_channels, precise)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.conv_out = nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else None

    def forward(self, x: Tensor) -> Tensor:
        # In-place activations and sum reuse fresh buffers: at 512x512 each saved allocation is 64 MB per face.
        h = self.conv1(self.norm1.with_swish(x))
        h = self.conv2(self.norm2.with_swish(h))
        return h.add_(x if self.conv_out is None else self.conv_out(x))


class AttnBlock(nn.Module):
    """Single-head non-local self-attention over all H*W positions, with a residual connection."""

    def __init__(self, channels: int, precise: bool = False) -> None:
        super().__init__()
        self.norm = group_norm(channels, precise)
        self.q = nn.Conv2d(channels, channels, kernel_size=1)
        self.k = nn.Conv2d(channels, channels, kernel_size=1)
        self.v = nn.Conv2d(channels, channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        # The 1x1 convs act on positions as tokens (N x HW x C, made contiguous once for the three matmuls);
        # the residual sum takes x's memory layout, whatever the token layout.
        tokens = self.norm(x).flatten(2).transpose(1, 2).contiguous()
        q, k, v = (_pointwise(conv, tokens).unsqueeze(1) for conv in (self.q, self.k, self.v))
        attended = F.scaled_dot_product_attention(q, k, v).squeeze(1)
        return x + _pointwise(self.proj_out, attended).transpose(1, 2).view(n, c, h, w)


def _pointwise(conv: nn.Conv2d, tokens: Tensor) -> Tensor:
    """A 1x1 conv applied to N x L x C_in tokens, giving N x L x C_out."""
    return F.linear(tokens, conv.weight.flatten(1), conv.bias)


class Downsample(nn.Module):
    """Halve H and W: pad one pixel right and bottom, then a stride-2 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        if torch.onnx.is_in_onnx_export():
            return self.conv(F.pad(x, (0, 1, 0, 1)))
        return self.conv(_pad_right_and_bottom(x))


def _pad_right_and_bottom(x: Tensor) -> Tensor:
    """F.pad(x, (0, 1, 0, 1)) in x's memory layout, without first zeroing the whole padded map (a 64 MB write per
    face at 512 x 512) as F.pad does."""
    n, c, h, w = x.shape
    layout = torch.channels_last if _channels_last_only(x) else torch.contiguous_format
    padded = torch.empty((n, c, h + 1, w + 1), dtype=x.dtype, device=x.device, memory_format=layout)
    padded[:, :, :h, :w] = x
    padded[:, :, h].zero_()
    padded[:, :, :h, w].zero_()
    return padded


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour upsampling, then a 3x3 conv.

    The upsampling runs in the features' own precision even under autocast, which would run it in float32: a
    nearest-neighbour copy gives the same values either way, and float32 would cast the features up, write four
    times as many at twice the width, and cast them all back down for the convolution.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            upsampled = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(upsampled)


class Encoder(nn.Module):
    """Image (N x 3 x S x S) -> latent (N x emb_dim x S/32 x S/32) through one level per entry of `ch_mult`.

    Each level holds `res_blocks` residual blocks (each followed by attention at `attn_resolution`) and, except
    the last, a downsample; a residual/attention/residual "mid" stack, a norm and a conv follow.
    """

    def __init__(
        self, *, nf: int, emb_dim: int, ch_mult: Sequence[int], res_blocks: int, resolution: int, attn_resolution: int
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(3, nf, kernel_size=3, padding=1)]
        # Skip features for the CFT are taken after a level's last residual block, before its downsample.
        self.skip_block_at: dict[int, int] = {}
        in_ch, res = nf, resolution
        for level, mult in enumerate(ch_mult):
            out_ch = nf * mult
            for _ in range(res_blocks):
                blocks.append(ResBlock(in_ch, out_ch, precise=True))
                self.skip_block_at[res] = len(blocks) - 1
                in_ch = out_ch
                if res == attn_resolution:
                    blocks.append(AttnBlock(in_ch, precise=True))
            if level != len(ch_mult) - 1:
                blocks.append(Downsample(in_ch))
                res //= 2
        blocks += [ResBlock(in_ch, in_ch, precise=True), AttnBlock(in_ch, precise=True),
                   ResBlock(in_ch, in_ch, precise=True)]
        blocks += [group_norm(in_ch, precise=True), nn.Conv2d(in_ch, emb_dim, kernel_size=3, padding=1)]
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor, skip_resolutions: Collection[int] = ()) -> tuple[Tensor, dict[int, Tensor]]:
        """Return the latent and, for each resolution in `skip_resolutions`, that level's feature map."""
        keep = {self.skip_block_at[res]: res for res in skip_resolutions}
        skips: dict[int, Tensor] = {}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in keep:
                skips[keep[i]] = x
        return x, skips


class Generator(nn.Module):
    """The VQGAN decoder: latent (N x emb_dim x s x s) -> image (N x 3 x 32s x 32s), mirroring the encoder."""

    def __init__(
        self, *, nf: int, emb_dim: int, ch_mult: Sequence[int], res_blocks: int, resolution: int, attn_resolution: int
    ) -> None:
        super().__init__()
        in_ch = nf * ch_mult[-1]
        res = resolution // 2 ** (len(ch_mult) - 1)
        blocks: list[nn.Module] = [nn.Conv2d(emb_dim, in_ch, kernel_size=3, padding=1)]
        blocks += [ResBlock(in_ch, in_ch), AttnBlock(in_ch), ResBlock(in_ch, in_ch)]
        # CFT fusion happens after a level's first residual block.
        self.fuse_block_at: dict[int, int] = {}
        for level in reversed(range(len(ch_mult))):
            out_ch = nf * ch_mult[level]
            for block_in_level in range(res_blocks):
                blocks.append(ResBlock(in_ch, out_ch))
                if block_in_level == 0:
                    self.fuse_block_at[res] = len(blocks) - 1
                in_ch = out_ch
                if res == attn_resolution:
                    blocks.append(AttnBlock(in_ch))
            if level != 0:
                blocks.append(Upsample(in_ch))
                res *= 2
        blocks += [group_norm(in_ch), nn.Conv2d(in_ch, 3, kernel_size=3, padding=1)]
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor, fuse: Mapping[int, Callable[[Tensor], Tensor]] | None = None) -> Tensor:
        """Decode `x`; after the first residual block at resolution r, replace the features f by `fuse[r](f)`."""
        fuse_after = {self.fuse_block_at[res]: step for res, step in (fuse or {}).items()}
        for i, block in enumerate(self.blocks):
            x = block(x)
            step = fuse_after.get(i)
            if step is not None:
                x = step(x)
        return x


class VectorQuantizer(nn.Module):
    """The learned codebook: `codebook_size` code vectors of `emb_dim` channels."""

    def __init__(self, codebook_size: int, emb_dim: int) -> None:
        super().__init__()
        # Passing the weight skips nn.Embedding's random init: the codebook always comes from a checkpoint.
        self.embedding = nn.Embedding(codebook_size, emb_dim, _weight=torch.empty(codebook_size, emb_dim))

    @property
    def codebook_size(self) -> int:
        return self.embedding.num_embeddings

    def lookup(self, indices: Tensor, height: int, width: int) -> Tensor:
        """Code vectors for N x (height*width) row-major indices, as an N x emb_dim x height x width map.

        Indexing returns the stored rows bit for bit, as the reference's one-hot matmul does, without the
        N*HW x codebook_size one-hot matrix.
        """
        codes = F.embedding(indices, self.embedding.weight)
        return codes.unflatten(1, (height, width)).permute(0, 3, 1, 2)
