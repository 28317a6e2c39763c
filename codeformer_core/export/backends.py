"""Which backend runs the CodeFormer network: torch (the default) or ONNX Runtime on the exported graphs.

ONNX Runtime is an optional extra (requirements-onnx.txt): nothing here imports it; `missing_packages` asks the
import system whether it could.
"""

import importlib.util
from typing import Literal

from ..checks import check_choice
from ..errors import InvalidOptionError

Backend = Literal["auto", "torch", "onnxruntime"]
BACKENDS: tuple[Backend, ...] = ("auto", "torch", "onnxruntime")

ResolvedBackend = Literal["torch", "onnxruntime"]
ONNX_PACKAGES = ("onnxruntime", "onnx")

AUTO_BACKEND: ResolvedBackend = "torch"
"""What "auto" picks, on every device: onnxruntime is to be the default only where a bench run finds it ahead end to
end, which it was not on the CPU (bench/README.md); on CUDA no run has measured it."""


def missing_packages() -> list[str]:
    """The packages of the onnxruntime backend that are not installed."""
    return [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]


def resolve_backend(requested: Backend) -> ResolvedBackend:
    """The backend to run ("auto": AUTO_BACKEND, on every device); InvalidOptionError, in one line, when onnxruntime
    is asked for but missing."""
    check_choice("backend", requested, BACKENDS)
    if requested == "auto":
        return AUTO_BACKEND
    if requested == "onnxruntime" and missing_packages():
        raise InvalidOptionError(
            f"The onnxruntime backend needs the {' and '.join(missing_packages())} package(s): "
            "pip install -r requirements-onnx.txt (or use the torch backend)."
        )
    return requested
