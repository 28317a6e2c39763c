"""CodeFormer (Zhou et al., NeurIPS 2022): codebook lookup transformer with controllable feature transformation.

Data path, split so that moving the fidelity slider re-runs only the decoder:

    encode: face -> VQGAN encoder -> lq_feat -> transformer -> logits -> top-1 code indices
            -> codebook lookup -> AdaIN to lq_feat's statistics (optional)            [does not depend on w]
    decode: looked-up features -> VQGAN generator, with the CFT blocks adding
            w * (dec * scale + shift) computed from the encoder's skip features        [w in [0, 1]]

Faces are N x 3 x 512 x 512 float32 tensors in [-1, 1], channel order R, G, B; outputs are in the same space,
not clamped.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from ..checks import check_choice, check_fidelity
from ..errors import InvalidImageError
from ..layouts import FACE_SIZE, TASKS, Task
from .encoded import EncodedFaces
from .precision import DecoderOverflows, Precision, computing_at, overflow_fallback
from .transformer import transformer_layers
from .vqgan import Encoder, Generator, ResBlock, VectorQuantizer

LATENT_SIZE = 16
LATENT_CHANNELS = 256
# The VQGAN shape shared by all published CodeFormer checkpoints.
VQGAN_SHAPE = dict(nf=64, emb_dim=LATENT_CHANNELS, ch_mult=(1, 2, 2, 4, 4, 8), res_blocks=2, resolution=FACE_SIZE,
                   attn_resolution=LATENT_SIZE)
TRANSFORMER_LAYERS = 9
TRANSFORMER_DIM = 512
TRANSFORMER_HEADS = 8
TRANSFORMER_MLP = 1024
ADAIN_EPS = 1e-5


@dataclass(frozen=True)
class NetworkConfig:
    """What differs between the three published networks."""

    task: Task
    codebook_size: int
    cft_resolutions: tuple[int, ...]
    """Decoder resolutions with a CFT block (the reference's `connect_list`)."""


CONFIGS: dict[Task, NetworkConfig] = {
    "restore": NetworkConfig("restore", codebook_size=1024, cft_resolutions=(32, 64, 128, 256)),
    "colorize": NetworkConfig("colorize", codebook_size=1024, cft_resolutions=(32, 64, 128)),
    "inpaint": NetworkConfig("inpaint", codebook_size=512, cft_resolutions=(32, 64, 128)),
}


def adaptive_instance_normalization(content: Tensor, style: Tensor, eps: float = ADAIN_EPS) -> Tensor:
    """Give `content` (N x C x H x W) the per-channel mean and standard deviation of `style`.

    As in the reference, the variance is the unbiased one and eps is added to it before the square root.
    """
    content_var, content_mean = torch.var_mean(content, dim=(2, 3), keepdim=True)
    style_var, style_mean = torch.var_mean(style, dim=(2, 3), keepdim=True)
    normalized = (content - content_mean) / (content_var + eps).sqrt()
    return normalized * (style_var + eps).sqrt() + style_mean


class ControllableFeatureTransform(nn.Module):
    """CFT block (the reference's `Fuse_sft_block`): dec + w * (dec * scale + shift).

    scale and shift are predicted from the encoder's features concatenated with the decoder's, so w = 0 keeps
    the codebook's face and w = 1 pulls it towards the input.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.encode_enc = ResBlock(2 * channels, channels)
        self.scale = _conv_lrelu_conv(channels)
        self.shift = _conv_lrelu_conv(channels)

    def forward(self, enc_feat: Tensor, dec_feat: Tensor, w: float | Tensor) -> Tensor:
        # The encoder's features are kept in float32 (EncodedFaces); under autocast the decoder's are reduced, and
        # cat would promote both to float32, so the block's first norm and activation would run at twice the width.
        fused = self.encode_enc(torch.cat([enc_feat.to(dec_feat.dtype), dec_feat], dim=1))
        # In place on the fresh scale map: the same values as the reference's expression, three fewer full-size
        # temporaries.
        return self.scale(fused).mul_(dec_feat).add_(self.shift(fused)).mul_(w).add_(dec_feat)


def _conv_lrelu_conv(channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, channels, kernel_size=3, padding=1),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(channels, channels, kernel_size=3, padding=1),
    )


class CodeFormer(nn.Module):
    """The CodeFormer network for one task; see the module docstring for the data path.

    Precision: `encode`, `decode` and `forward` take `precision` ("float32" by default, exact, TF32 off on CUDA;
    "bf16" or "fp16" run under `torch.autocast` on the input's device: faster where the hardware has the
    units, far slower where it emulates them; `reduced_precision(device)` picks the one worth using). A reduced
    precision batch whose results overflow runs again at `overflow_fallback` (bf16 or float32); once a decode has
    overflowed at some w, later decodes at that w or above start at the fallback where it is bf16
    (`DecoderOverflows`). Whatever the precision, results come back as float32.
    Convolution speed: on a CPU, `cpu_convolutions.use_fast_cpu_convolutions(net)` (Winograd and GEMM kernels)
    runs the convolutions faster within the golden bounds (bench/README.md); where oneDNN's kernels win,
    `use_channels_last()` runs the whole network on N x H x W x C data (within the golden bounds, the encoder's
    through `vqgan.PreciseGroupNorm`). On CUDA the default layout is the faster one (bench/results-cuda.md). The
    golden tests pin the default path and check both speed options.
    Passes: `encode` and `decode` each run one pass (`encode_pass`, `decode_pass`) and check what it gives.
    Inference only: encode and decode run under `torch.inference_mode()` and reuse buffers in place.
    """

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(**VQGAN_SHAPE)
        self.quantize = VectorQuantizer(config.codebook_size, LATENT_CHANNELS)
        self.generator = Generator(**VQGAN_SHAPE)
        self.position_emb = nn.Parameter(torch.zeros(LATENT_SIZE * LATENT_SIZE, TRANSFORMER_DIM))
        self.feat_emb = nn.Linear(LATENT_CHANNELS, TRANSFORMER_DIM)
        self.ft_layers = transformer_layers(TRANSFORMER_LAYERS, TRANSFORMER_DIM, TRANSFORMER_HEADS, TRANSFORMER_MLP)
        self.idx_pred_layer = nn.Sequential(
            nn.LayerNorm(TRANSFORMER_DIM), nn.Linear(TRANSFORMER_DIM, config.codebook_size, bias=False)
        )
        self.fuse_convs_dict = nn.ModuleDict(
            {str(res): ControllableFeatureTransform(encoder_channels(res)) for res in config.cft_resolutions}
        )
        self.memory_format = torch.contiguous_format
        self.decoder_overflows = DecoderOverflows()

    @property
    def task(self) -> Task:
        return self.config.task

    @property
    def device(self) -> torch.device:
        """Where the network's parameters are, and where its input faces must be."""
        return self.position_emb.device

    def use_channels_last(self, enabled: bool = True) -> "CodeFormer":
        """Run the encoder, the generator and the CFT blocks channels_last, or in the default layout; returns self.

        Faces encoded afterwards carry their decoder inputs in the matching layout.
        """
        self.memory_format = torch.channels_last if enabled else torch.contiguous_format
        for part in (self.encoder, self.generator, self.fuse_convs_dict):
            part.to(memory_format=self.memory_format)
        return self

    def forward(
        self, x: Tensor, w: float = 0.0, adain: bool = True, precision: Precision = "float32"
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Restore faces in one go: (output N x 3 x 512 x 512, logits N x 256 x codebook, lq_feat N x 256 x 16 x 16)."""
        encoded = self.encode(x, adain=adain, precision=precision)
        return self.decode(encoded, w, precision=precision), encoded.logits, encoded.lq_feat

    @torch.inference_mode()
    def encode(self, x: Tensor, adain: bool = True, precision: Precision = "float32") -> EncodedFaces:
        """Everything that does not depend on w, for N faces (N x 3 x 512 x 512, [-1, 1], RGB).

        adain: match the looked-up features to the encoder's per-channel statistics (restore and colorize
        were trained with it, inpaint without).
        """
        self._check_faces(x)
        encoded = self.encode_pass(x, adain, precision)
        if not _all_finite(precision, encoded.lq_feat, encoded.logits):
            return self.encode(x, adain, overflow_fallback(precision, x.device))
        return encoded

    @torch.inference_mode()
    def decode(self, encoded: EncodedFaces, w: float, precision: Precision = "float32") -> Tensor:
        """Faces (N x 3 x 512 x 512, [-1, 1] space, RGB, not clamped) at fidelity w in [0, 1].

        w = 0 skips the CFT blocks entirely (the codebook's face); larger w follows the input more closely.
        """
        w = check_fidelity(w)
        device = encoded.quant_feat.device
        precision = self.decoder_overflows.start_precision(precision, w, device)
        out = self.decode_pass(encoded, w, precision)
        if not _all_finite(precision, out):
            self.decoder_overflows.note(precision, w)
            return self.decode(encoded, w, overflow_fallback(precision, device))
        return out

    @torch.inference_mode()
    def encode_pass(self, x: Tensor, adain: bool, precision: Precision) -> EncodedFaces:
        """One run of `encode`'s network at `precision`, its range unchecked (`encode` checks it); x is taken as
        it is, checked by `encode`."""
        x = x.contiguous(memory_format=self.memory_format)
        with computing_at(precision, x.device):
            lq_feat, skips = self.encoder(x, self.config.cft_resolutions)
            logits = self.predict_logits(lq_feat)
        lq_feat, logits = lq_feat.float(), logits.float()
        # Softmax is monotonic: its top-1 is the logits' argmax.
        idx = logits.argmax(dim=2)
        quant_feat = self.code_features(idx, lq_feat, adain)
        layout = self.memory_format
        return EncodedFaces(
            quant_feat=quant_feat.contiguous(memory_format=layout),
            skips={res: feat.float().contiguous(memory_format=layout) for res, feat in skips.items()},
            logits=logits,
            idx=idx,
            lq_feat=lq_feat,
        )

    @torch.inference_mode()
    def decode_pass(self, encoded: EncodedFaces, w: float | Tensor, precision: Precision) -> Tensor:
        """One run of `decode`'s network at `precision`, as float32, its range unchecked (`decode` checks it); w
        as `generate` takes it."""
        with computing_at(precision, encoded.quant_feat.device):
            out = self.generate(encoded.quant_feat, encoded.skips, w)
        return out.float()

    def code_features(self, idx: Tensor, lq_feat: Tensor, adain: bool) -> Tensor:
        """The codebook features of the code indices idx (N x 256), N x 256 x 16 x 16, given the encoder's
        latent statistics when `adain`."""
        quant_feat = self.quantize.lookup(idx, LATENT_SIZE, LATENT_SIZE).contiguous()
        return adaptive_instance_normalization(quant_feat, lq_feat) if adain else quant_feat

    def generate(self, quant_feat: Tensor, skips: Mapping[int, Tensor], w: float | Tensor) -> Tensor:
        """The generator with the CFT blocks adding w * (dec * scale + shift), as the module's precision and
        layout run it.

        A float w = 0 skips the CFT blocks (the reference's `if w > 0`); a tensor w (a scalar or shape [1], as an
        exported graph takes it) always runs them, so w stays an input of the graph: at w = 0 that adds 0 * x,
        which leaves every finite feature exactly as it was.
        """
        cft_steps = {}
        if isinstance(w, Tensor) or w > 0:
            cft_steps = {
                res: partial(self.fuse_convs_dict[str(res)], skips[res], w=w) for res in self.config.cft_resolutions
            }
        return self.generator(quant_feat, cft_steps)

    def predict_logits(self, lq_feat: Tensor) -> Tensor:
        """Transformer logits over the codebook, N x 256 x codebook_size, tokens row-major over the 16x16 latent."""
        tokens = self.feat_emb(lq_feat.flatten(2).transpose(1, 2))
        for layer in self.ft_layers:
            tokens = layer(tokens, self.position_emb)
        return self.idx_pred_layer(tokens)

    def _check_faces(self, x: Tensor) -> None:
        weight = self.position_emb
        check_faces(x, weight.dtype, weight.device)


def _all_finite(precision: Precision, *results: Tensor) -> bool:
    """Whether a run's results are usable: a float32 run's always are, as the reference's would be. In fp16 a
    feature past 65504 turns into inf and then NaN, a black or white face (the golden-fill weights overflow at
    high w); such a batch runs again at `overflow_fallback`."""
    if precision == "float32":
        return True
    return all(bool(torch.isfinite(result).all()) for result in results)


def check_faces(x: Tensor, dtype: torch.dtype, device: torch.device) -> None:
    """InvalidImageError unless `x` is a batch of faces shaped N x 3 x 512 x 512 of `dtype` on `device`."""
    expected = (3, FACE_SIZE, FACE_SIZE)
    if x.ndim != 4 or tuple(x.shape[1:]) != expected or x.shape[0] == 0:
        raise InvalidImageError(
            f"CodeFormer takes a batch of aligned faces shaped N x 3 x {FACE_SIZE} x {FACE_SIZE}; "
            f"got a tensor shaped {tuple(x.shape)}"
        )
    if x.dtype != dtype or x.device != device:
        raise InvalidImageError(f"faces must be {dtype} on {device} like the network; got {x.dtype} on {x.device}")


def build_network(task: Task) -> CodeFormer:
    """The CodeFormer network for `task` ("restore", "colorize" or "inpaint"): float32, CPU, eval mode.

    Its weights are zero until a checkpoint is loaded (see `codeformer_core.network.loading.load_network`):
    random initialisation of 95M parameters would only be overwritten.
    """
    net = network_skeleton(task)
    net.to_empty(device="cpu")
    with torch.no_grad():
        for tensor in net.state_dict().values():
            tensor.zero_()
    return net


def network_skeleton(task: Task) -> CodeFormer:
    """The network for `task` in eval mode without storage (meta device): its state_dict has the names and
    shapes only. Give it weights with `load_state_dict(..., assign=True)`, which takes the tensors as they are."""
    check_choice("task", task, TASKS)
    with torch.device("meta"):
        return CodeFormer(CONFIGS[task]).eval()


def composite_inpainting(x: Tensor, out: Tensor) -> Tensor:
    """Inpainting result: the network's output where the input is pure white (the painted holes, all three
    channels exactly 1.0 in [-1, 1] space), the input everywhere else. Both N x 3 x H x W."""
    holes = (x == 1.0).all(dim=1, keepdim=True)
    return torch.where(holes, out, x)


def encoder_channels(resolution: int) -> int:
    """Width of the encoder (and decoder) level working at `resolution`."""
    level = (FACE_SIZE // resolution).bit_length() - 1
    return VQGAN_SHAPE["nf"] * VQGAN_SHAPE["ch_mult"][level]

