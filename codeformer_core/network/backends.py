"""Which backend runs the CodeFormer network: torch (the default) or ONNX Runtime on the exported graphs.

ONNX Runtime is an optional extra (requirements-onnx.txt): nothing here imports it; `missing_packages` asks the
import system whether it could.
"""

import importlib.util
from typing import Literal

import torch

from ..errors import InvalidOptionError
from ..options import check_choice
from ..settings import BACKENDS, Backend

ResolvedBackend = Literal["torch", "onnxruntime"]
ONNX_PACKAGES = ("onnxruntime", "onnx")

AUTO_BACKEND: dict[str, ResolvedBackend] = {"cpu": "torch", "cuda": "torch"}
"""What "auto" picks per device type: the backend ahead end to end in bench/onnx_backend.py (bench/README.md)."""


def missing_packages() -> list[str]:
    """The packages of the onnxruntime backend that are not installed."""
    return [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]


def resolve_backend(requested: Backend, device: torch.device) -> ResolvedBackend:
    """The backend to run on `device`; InvalidOptionError, in one line, when onnxruntime is asked for but missing.
    "auto" falls back to torch where onnxruntime is not installed."""
    check_choice("backend", requested, BACKENDS)
    if requested == "auto":
        chosen = AUTO_BACKEND.get(device.type, "torch")
        return chosen if chosen == "torch" or not missing_packages() else "torch"
    if requested == "onnxruntime" and missing_packages():
        raise InvalidOptionError(
            f"The onnxruntime backend needs the {' and '.join(missing_packages())} package(s): "
            "pip install -r requirements-onnx.txt (or use the torch backend)."
        )
    return requested
