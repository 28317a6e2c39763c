"""The CodeFormer network: VQGAN encoder/decoder, codebook, code-prediction transformer and CFT blocks."""

from .codeformer import CONFIGS, CodeFormer, NetworkConfig, build_network, composite_inpainting
from .encoded import EncodedFaces, FaceNetwork
from .precision import PRECISIONS, Precision, reduced_precision

__all__ = [
    "CONFIGS",
    "PRECISIONS",
    "CodeFormer",
    "EncodedFaces",
    "FaceNetwork",
    "NetworkConfig",
    "Precision",
    "build_network",
    "composite_inpainting",
    "reduced_precision",
]
