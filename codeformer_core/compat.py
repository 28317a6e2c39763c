"""Every private or version-specific API the engine uses, each behind a capability check with a plain fallback.

Nothing else in the engine touches a private torch or torchvision name, so a release that drops one changes
this module only, and the engine then runs its plain path instead of failing:
- NNPACK's Winograd convolution (`torch._nnpack_spatial_convolution`): the fast CPU kernels; without it the
  networks keep torch's own convolutions.
- oneDNN's bf16 probe (`torch.ops.mkldnn._is_mkldnn_bf16_supported`): whether reduced precision is native on this
  CPU; without it, float32.
- `torchvision.transforms.functional_tensor`, removed in torchvision 0.17 but imported by basicsr 1.4.2 and
  realesrgan 0.3.0: registered as an alias of the function they use, before they are imported.
"""

import sys
import types
from collections.abc import Sequence

import torch
from torch import Tensor

_LEGACY_TORCHVISION_MODULE = "torchvision.transforms.functional_tensor"


def nnpack_available() -> bool:
    """Whether this torch build has NNPACK's convolution and NNPACK runs on this CPU.

    The check also initialises NNPACK, which its convolution needs before the first call (otherwise it fails with
    'SpatialConvolution_updateOutput failed').
    """
    if not callable(getattr(torch, "_nnpack_spatial_convolution", None)):
        return False
    backend = getattr(torch.backends, "nnpack", None)
    return bool(backend is not None and backend.is_available())


def nnpack_convolution(x: Tensor, weight: Tensor, bias: Tensor | None, padding: Sequence[int]) -> Tensor:
    """A stride-1 convolution through NNPACK's Winograd kernels (call only when `nnpack_available()`)."""
    return torch._nnpack_spatial_convolution(x, weight, bias, list(padding), [1, 1])


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 on this CPU's own instructions rather than emulating them; False where torch
    cannot say."""
    probe = getattr(getattr(torch.ops, "mkldnn", None), "_is_mkldnn_bf16_supported", None)
    if probe is None:
        return False
    try:
        return bool(probe())
    except RuntimeError:  # an operator registered by name but missing from this build
        return False


def register_torchvision_alias() -> None:
    """Let basicsr and realesrgan import `torchvision.transforms.functional_tensor` on current torchvision.

    They only use `rgb_to_grayscale` from it, which lives on in `torchvision.transforms.functional`. Call before
    importing either package; a torchvision that still has the module is left alone.
    """
    if _LEGACY_TORCHVISION_MODULE in sys.modules:
        return
    import torchvision.transforms.functional as functional

    try:
        __import__(_LEGACY_TORCHVISION_MODULE)
        return
    except ImportError:
        pass
    alias = types.ModuleType(_LEGACY_TORCHVISION_MODULE)
    alias.rgb_to_grayscale = functional.rgb_to_grayscale  # type: ignore[attr-defined]
    sys.modules[_LEGACY_TORCHVISION_MODULE] = alias
