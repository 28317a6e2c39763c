"""The engine's options both command lines take (`python -m codeformer_core TASK` and `app.py`), and the settings
they make of the environment's."""

import argparse
import dataclasses
from pathlib import Path

from ..export.backends import BACKENDS
from ..network.precision import FAST_PRECISIONS
from ..settings import Settings


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """--device, --weights-dir, --backend and --fast-precision, each defaulting to the environment's setting."""
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--weights-dir", type=Path,
                        help="where pretrained files are looked up and downloaded (default $CODEFORMER_WEIGHTS_DIR, "
                             "else ./weights)")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="what runs the network: torch, onnxruntime (needs requirements-onnx.txt) or auto, which "
                             "is torch on every device (default $CODEFORMER_BACKEND, else auto)")
    parser.add_argument("--fast-precision", choices=FAST_PRECISIONS, default=None,
                        help="what runs not asked to be exact decode in: auto (bf16 where the device computes it "
                             "natively, else float32), bf16, fp16 or float32; codes are always float32's (default "
                             "$CODEFORMER_FAST_PRECISION, else auto)")


def with_overrides(settings: Settings, args: argparse.Namespace) -> Settings:
    """`settings` with what the command line gave (the Ray actors' pipelines get it this way too)."""
    given = {"weights_dir": args.weights_dir, "backend": args.backend, "fast_precision": args.fast_precision}
    return dataclasses.replace(settings, **{name: value for name, value in given.items() if value is not None})
