"""Which backend runs the CodeFormer network: torch (the default), torch replaying CUDA graphs, or ONNX Runtime on
the exported graphs.

ONNX Runtime is an optional extra (requirements-onnx.txt): nothing here imports it; `missing_packages` asks the
import system whether it could.
"""

import importlib.util
from typing import Literal

import torch

from ..errors import InvalidOptionError
from ..options import check_choice
from ..settings import BACKENDS, Backend

ResolvedBackend = Literal["torch", "cuda-graphs", "onnxruntime"]
ONNX_PACKAGES = ("onnxruntime", "onnx")

AUTO_BACKEND: ResolvedBackend = "torch"
"""What "auto" picks, on every device: onnxruntime is to be the default only where bench/onnx_backend.py finds it
ahead end to end, which it was not on the CPU (bench/README.md); on CUDA it has not been measured yet, nor has
cuda-graphs inside the pipeline (bench/gpu_check: its rows in bench/results-cuda.md)."""


def missing_packages() -> list[str]:
    """The packages of the onnxruntime backend that are not installed."""
    return [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]


def resolve_backend(requested: Backend, device: torch.device) -> ResolvedBackend:
    """The backend to run on `device` ("auto": AUTO_BACKEND, on every device); InvalidOptionError, in one line,
    when onnxruntime is asked for but missing, or cuda-graphs off CUDA."""
    check_choice("backend", requested, BACKENDS)
    if requested == "auto":
        return AUTO_BACKEND
    if requested == "cuda-graphs" and device.type != "cuda":
        raise InvalidOptionError(
            f"The cuda-graphs backend runs on CUDA only; this run's device is {device}: use --backend torch or auto."
        )
    if requested == "onnxruntime" and missing_packages():
        raise InvalidOptionError(
            f"The onnxruntime backend needs the {' and '.join(missing_packages())} package(s): "
            "pip install -r requirements-onnx.txt (or use the torch backend)."
        )
    return requested
