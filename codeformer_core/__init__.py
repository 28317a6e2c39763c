"""CodeFormer face restoration engine: the network, its weights, the face pipeline and the command line.

Importing the package loads neither torch nor any model: the names below resolve on first use, so light modules
(`codeformer_core.images`, `codeformer_core.options`) stay quick to import.
"""

import importlib
from typing import Any

_EXPORTS = {
    "build_network": "codeformer_core.network",
    "load_network": "codeformer_core.network.loading",
    "CodeFormerError": "codeformer_core.errors",
    "RestoreOptions": "codeformer_core.options",
    "Pipeline": "codeformer_core.pipeline",
    "read_image": "codeformer_core.images",
    "Settings": "codeformer_core.settings",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'codeformer_core' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
