"""Pretrained files: which the app needs (registry), where they come from (the Hub and the release URLs), how they
are checked and read (checkpoints), the store that hands them out, and the `download` command.

Importing the package loads no network library: the names below resolve on first use, so a network loader that
only reads a local checkpoint never imports huggingface_hub.
"""

import importlib
from typing import Any

_EXPORTS = {
    "WeightStore": "store",
    "DownloadProgress": "sources",
    "REGISTRY": "registry",
    "WeightFile": "registry",
    "CODEFORMER_FILES": "registry",
    "DETECTOR_FILES": "registry",
    "PARSER_FILE": "registry",
    "REALESRGAN_FILE": "registry",
    "files_needed": "registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
