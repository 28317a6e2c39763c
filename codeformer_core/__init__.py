"""CodeFormer face restoration engine: the network, its weights, the face pipeline and the command line.

Importing it loads no model and no UI; the heavy pieces load on first use.
"""

from .checkpoints import load_network
from .errors import CodeFormerError
from .network import build_network
from .options import RestoreOptions

__all__ = ["CodeFormerError", "RestoreOptions", "build_network", "load_network"]
