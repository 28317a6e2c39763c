"""Compatibility shim for basicsr 1.4.2, realesrgan 0.3.0 and gfpgan on current torchvision.

Why: those packages import `torchvision.transforms.functional_tensor`, a private module torchvision removed in
0.17. They only use `rgb_to_grayscale` from it, which lives on in `torchvision.transforms.functional`. Registering
an alias module before they are imported lets the unmodified PyPI releases import. Import this module before any of
them (the engine's modules that use them do so at their top).
"""

import sys
import types

import torchvision.transforms.functional as _functional

_LEGACY_NAME = "torchvision.transforms.functional_tensor"

if _LEGACY_NAME not in sys.modules:
    _alias = types.ModuleType(_LEGACY_NAME)
    _alias.rgb_to_grayscale = _functional.rgb_to_grayscale  # type: ignore[attr-defined]
    sys.modules[_LEGACY_NAME] = _alias
