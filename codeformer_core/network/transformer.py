"""CodeFormer's code-prediction transformer: pre-norm self-attention layers over the 16x16 latent tokens.

Tokens are batch-first, N x L x dim (L = 256 positions in row-major order). Parameter names follow
`torch.nn.MultiheadAttention` and the published checkpoints (`self_attn.in_proj_weight`, `self_attn.out_proj`,
`linear1`, `linear2`, `norm1`, `norm2`), so a state_dict loads with `strict=True`.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .reduced_weights import autocast_parameters


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention whose queries and keys carry the position embedding and values do not.

    The projections live in one (3*dim) x dim matrix as in `nn.MultiheadAttention`; the attention itself is
    PyTorch's fused scaled-dot-product kernel.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, query_key: Tensor, value: Tensor) -> Tensor:
        dim = value.shape[-1]
        weight, bias = autocast_parameters(self, value, self.in_proj_weight, self.in_proj_bias)
        # Queries and keys share their input, so both come from one matmul.
        qk = F.linear(query_key, weight[: 2 * dim], bias[: 2 * dim])
        v = F.linear(value, weight[2 * dim :], bias[2 * dim :])
        q, k = qk.chunk(2, dim=-1)
        attended = F.scaled_dot_product_attention(self._split_heads(q), self._split_heads(k), self._split_heads(v))
        return self.out_proj(attended.transpose(1, 2).flatten(2))

    def _split_heads(self, x: Tensor) -> Tensor:
        """N x L x dim -> N x heads x L x dim/heads."""
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)


class TransformerSALayer(nn.Module):
    """One pre-norm transformer layer: x + SelfAttention(LN(x)), then x + MLP(LN(x)) with a GELU MLP."""

    def __init__(self, dim: int, heads: int, dim_mlp: int) -> None:
        super().__init__()
        self.self_attn = MultiHeadSelfAttention(dim, heads)
        self.linear1 = nn.Linear(dim, dim_mlp)
        self.linear2 = nn.Linear(dim_mlp, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: Tensor, position: Tensor) -> Tensor:
        normed = self.norm1(x)
        x = x + self.self_attn(normed + position, normed)
        return x + self.linear2(F.gelu(self.linear1(self.norm2(x))))


def transformer_layers(n_layers: int, dim: int, heads: int, dim_mlp: int) -> nn.ModuleList:
    """The stack of `n_layers` identical pre-norm layers (CodeFormer: 9 layers, dim 512, 8 heads, MLP 1024)."""
    return nn.ModuleList(TransformerSALayer(dim, heads, dim_mlp) for _ in range(n_layers))
