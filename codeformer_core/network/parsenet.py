"""ParseNet, the face parser behind the official paste-back mask, written for inference.

The published `parsing_parsenet.pth` (facexlib's ParseNet from PSFRGAN: 512 in, 512 out, 19 classes) loads into
it strictly: the module names below are the checkpoint's keys. It computes the same labels with less work:
- batch norms are folded into their convolutions once the weights are in (`fold_batch_norms`);
- a residual block pads (and, going up, upsamples) its input once for its shortcut and its first convolution,
  where the original does it twice;
- no identity copies (the original multiplies by 1.0 for every absent norm or activation);
- only the mask head runs: the image head (a by-product of PSFRGAN's training) is loaded but never computed.
It takes about half of facexlib's module's time per face (bench/README.md).
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PARSE_CLASSES = 19
_LEAKY_SLOPE = 0.2
_BODY_CHANNELS = 256
_BODY_BLOCKS = 10
_DOWN_CHANNELS = ((64, 128), (128, 256), (256, 256), (256, 256))  # 512 px -> 32 px
_UP_CHANNELS = ((256, 256), (256, 256), (256, 128), (128, 64))  # 32 px -> 512 px


class _BatchNorm(nn.Module):
    """Holds the BatchNorm2d one level down, where the checkpoint's keys put it (`...norm.norm.weight`)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)


class ConvLayer(nn.Module):
    """Reflection-padded 3 x 3 convolution, optionally strided by 2, batch-normed and LeakyReLU'd.

    Takes its input already padded (see `pad`), so a block can share one padded tensor between two layers.
    """

    def __init__(self, c_in: int, c_out: int, *, stride: int = 1, norm: bool = False, activation: bool = False) -> None:
        super().__init__()
        self.conv2d = nn.Conv2d(c_in, c_out, 3, stride, bias=not norm)
        self.norm = _BatchNorm(c_out) if norm else None
        self.activation = activation

    def forward(self, padded: Tensor) -> Tensor:
        out = self.conv2d(padded)
        if self.norm is not None:
            out = self.norm.norm(out)
        return F.leaky_relu_(out, _LEAKY_SLOPE) if self.activation else out

    def fold_batch_norm(self) -> None:
        """Scale the convolution's weights by the norm's running statistics and drop the norm (inference only)."""
        if self.norm is None:
            return
        bn = self.norm.norm
        with torch.no_grad():
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            with torch.device("meta"):  # no throwaway initialisation: both tensors are computed below
                folded = nn.Conv2d(self.conv2d.in_channels, self.conv2d.out_channels, 3, self.conv2d.stride)
            folded.weight = nn.Parameter(self.conv2d.weight * scale[:, None, None, None])
            folded.bias = nn.Parameter(bn.bias - bn.running_mean * scale)
        self.conv2d, self.norm = folded, None


def pad(x: Tensor) -> Tensor:
    return F.pad(x, (1, 1, 1, 1), mode="reflect")


def _upsample(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


class ResidualBlock(nn.Module):
    """Two convolutions and a shortcut; "down" halves the resolution (the second convolution strides),
    "up" doubles it (nearest upsampling first), and "none" keeps it with an identity shortcut."""

    def __init__(self, c_in: int, c_out: int, scale: str) -> None:
        super().__init__()
        self.scale = scale
        self.shortcut_func = None if scale == "none" else ConvLayer(c_in, c_out, stride=2 if scale == "down" else 1)
        self.conv1 = ConvLayer(c_in, c_out, norm=True, activation=True)
        self.conv2 = ConvLayer(c_out, c_out, stride=2 if scale == "down" else 1, norm=True)

    def forward(self, x: Tensor) -> Tensor:
        padded_branch, identity = self._first_layers(x)
        return self.conv2(padded_branch).add_(identity)

    def _first_layers(self, x: Tensor) -> tuple[Tensor, Tensor]:
        # Each map is dropped once used: the padded input (135 MB going up to 512 px) before the branch is padded,
        # the unpadded branch before the second convolution runs.
        padded = pad(_upsample(x) if self.scale == "up" else x)
        identity = x if self.shortcut_func is None else self.shortcut_func(padded)
        branch = self.conv1(padded)
        del padded
        return pad(branch), identity


class ParseNet(nn.Module):
    """512 x 512 RGB faces in [-1, 1] -> N x 19 x 512 x 512 class logits."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            ConvLayer(3, _DOWN_CHANNELS[0][0]), *(ResidualBlock(i, o, "down") for i, o in _DOWN_CHANNELS)
        )
        self.body = nn.Sequential(*(ResidualBlock(_BODY_CHANNELS, _BODY_CHANNELS, "none") for _ in range(_BODY_BLOCKS)))
        self.decoder = nn.Sequential(*(ResidualBlock(i, o, "up") for i, o in _UP_CHANNELS))
        head_channels = _UP_CHANNELS[-1][1]
        self.out_img_conv = ConvLayer(head_channels, 3)
        self.out_mask_conv = ConvLayer(head_channels, PARSE_CLASSES)

    def forward(self, faces: Tensor) -> Tensor:
        feat = self.encoder[0](pad(faces))
        for block in self.encoder[1:]:
            feat = block(feat)
        x = self.body(feat).add_(feat)
        return self.out_mask_conv(pad(self.decoder(x)))

    def fold_batch_norms(self) -> "ParseNet":
        """Fold every batch norm into its convolution (after loading the weights; the keys change). Returns self."""
        for module in self.modules():
            if isinstance(module, ConvLayer):
                module.fold_batch_norm()
        return self
