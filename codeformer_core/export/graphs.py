"""The CodeFormer network as two traceable graphs with w as an input: encoder (w-independent) and decoder.

The split is `CodeFormer.encode` / `CodeFormer.decode` without their Python-side work (checks, autocast,
inference mode), so that an exported pair keeps what the torch network keeps: a new fidelity re-runs the decoder
only. Names of the graphs' inputs and outputs are the interface of the exported files (see export/onnx_export.py).
Tensors are float32; faces N x 3 x 512 x 512 RGB in [-1, 1]; `weight` is w in [0, 1], shape [1].
"""

import torch
from torch import Tensor, nn

from ..network import CodeFormer
from ..network.swapping import swap_modules
from ..network.vqgan import AutocastGroupNorm

FACES = "input"
WEIGHT = "weight"
OUTPUT = "output"
LOGITS = "logits"
LQ_FEAT = "lq_feat"
QUANT_FEAT = "quant_feat"


def skip_name(resolution: int) -> str:
    """The name of the encoder feature map that feeds the CFT block at `resolution`."""
    return f"skip_{resolution}"


def encoder_outputs(net: CodeFormer) -> list[str]:
    return [LOGITS, LQ_FEAT, QUANT_FEAT, *map(skip_name, net.config.cft_resolutions)]


def decoder_inputs(net: CodeFormer) -> list[str]:
    return [QUANT_FEAT, *map(skip_name, net.config.cft_resolutions), WEIGHT]


class EncoderGraph(nn.Module):
    """input -> logits (N x 256 x codebook), lq_feat, quant_feat (N x 256 x 16 x 16, after AdaIN when `adain`),
    then one skip feature map per CFT resolution, in `encoder_outputs` order."""

    def __init__(self, net: CodeFormer, adain: bool) -> None:
        super().__init__()
        self.net = net
        self.adain = adain

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        net = self.net
        lq_feat, skips = net.encoder(x, net.config.cft_resolutions)
        logits = net.predict_logits(lq_feat)
        quant_feat = net.code_features(logits.argmax(dim=2), lq_feat, self.adain)
        return (logits, lq_feat, quant_feat, *(skips[res] for res in net.config.cft_resolutions))


class DecoderGraph(nn.Module):
    """quant_feat, the skips (in `decoder_inputs` order), weight -> output N x 3 x 512 x 512 (not clamped)."""

    def __init__(self, net: CodeFormer) -> None:
        super().__init__()
        self.net = net

    def forward(self, quant_feat: Tensor, *skips_and_weight: Tensor) -> Tensor:
        *skips, weight = skips_and_weight
        resolutions = self.net.config.cft_resolutions
        return self.net.generate(quant_feat, dict(zip(resolutions, skips, strict=True)), weight)


class StagedGroupNorm(AutocastGroupNorm):
    """The VQGAN's GroupNorm (same parameters; a ResBlock's swish after it too) whose statistics are means of
    means: over width, then height, then the group's channels. Exported in float32: no autocast path.

    Why: ONNX Runtime sums a group's values (up to 2 x 512 x 512 per group) in one float32 pass, whatever the
    node (InstanceNormalization or ReduceMean), which moved the encoder's latent over the golden bound; staged
    sums keep each at torch's accuracy for a little more normalisation time (bench/README.md).
    """

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        groups = x.reshape(n, self.num_groups, -1, h, w)
        centered = groups - _staged_mean(groups)
        variance = _staged_mean(centered * centered)
        normed = (centered / torch.sqrt(variance + self.eps)).reshape(n, c, h, w)
        return normed * self.weight[:, None, None] + self.bias[:, None, None]


def _staged_mean(groups: Tensor) -> Tensor:
    """The mean over the last three dimensions of N x G x C/G x H x W, one dimension at a time."""
    return groups.mean(dim=4, keepdim=True).mean(dim=3, keepdim=True).mean(dim=2, keepdim=True)


def use_staged_group_norms(module: nn.Module) -> int:
    """Swap, in place, every nn.GroupNorm inside `module` for a StagedGroupNorm sharing its parameters; returns
    how many. For a network about to be exported: torch's own kernel is as accurate and faster."""
    return swap_modules(
        module,
        lambda child: isinstance(child, nn.GroupNorm) and not isinstance(child, StagedGroupNorm),
        lambda norm: StagedGroupNorm(norm.num_groups, norm.num_channels, eps=norm.eps),
    )
