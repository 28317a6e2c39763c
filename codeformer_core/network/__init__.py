"""The networks and how they run: CodeFormer (VQGAN encoder/decoder, codebook, code-prediction transformer, CFT
blocks), ParseNet (face parsing) and Real-ESRGAN (background), with the torch and ONNX Runtime backends."""

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
