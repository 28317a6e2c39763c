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


def group_norm(channels: int) -> "AutocastGroupNorm":
    """The VQGAN's normalisation: GroupNorm with 32 groups and eps 1e-6."""
    return AutocastGroupNorm(num_groups=GROUPS, num_channels=channels, eps=NORM_EPS, affine=True)


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


class ResBlock(nn.Module):
    """Pre-activation residual block: (GroupNorm, swish, 3x3 conv) twice, plus a 1x1 shortcut if widths differ."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.conv_out = nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else None

    def forward(self, x: Tensor) -> Tensor:
        # In-place activations and sum reuse fresh buffers: at 512x512 each saved allocation is 64 MB per face.
        h = self.conv1(self.norm1.with_swish(x))
        h = self.conv2(self.norm2.with_swish(h))
        return h.add_(x if self.conv_out is None else self.conv_out(x))


class AttnBlock(nn.Module):
    """Single-head non-local self-attention over all H*W positions, with a residual connection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
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
        return self.conv(F.pad(x, (0, 1, 0, 1)))


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
                blocks.append(ResBlock(in_ch, out_ch))
                self.skip_block_at[res] = len(blocks) - 1
                in_ch = out_ch
                if res == attn_resolution:
                    blocks.append(AttnBlock(in_ch))
            if level != len(ch_mult) - 1:
                blocks.append(Downsample(in_ch))
                res //= 2
        blocks += [ResBlock(in_ch, in_ch), AttnBlock(in_ch), ResBlock(in_ch, in_ch)]
        blocks += [group_norm(in_ch), nn.Conv2d(in_ch, emb_dim, kernel_size=3, padding=1)]
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
