"""Where the shared test data lives: `../shared` beside the checkout (golden vectors and sample photos), defined
here once for the tests, the benches and the GPU check."""

import os
from pathlib import Path

DEFAULT_SHARED_DIR = Path(__file__).resolve().parents[3] / "shared"
SHARED_DIR_VARIABLE = "CODEFORMER_SHARED_DIR"
"""Points elsewhere, e.g. where the GPU check unpacked the carried copy."""


def shared_dir() -> Path:
    """The shared data folder; FileNotFoundError with the fix when it is missing."""
    directory = Path(os.environ.get(SHARED_DIR_VARIABLE) or DEFAULT_SHARED_DIR)
    if not (directory / "golden").is_dir() or not (directory / "samples").is_dir():
        raise FileNotFoundError(
            f"The shared test data (golden/ and samples/) is not at {directory}: put the `shared` folder beside the"
            f" checkout, or set {SHARED_DIR_VARIABLE} to where it is."
        )
    return directory


def golden_dir() -> Path:
    return shared_dir() / "golden"


def samples_dir() -> Path:
    return shared_dir() / "samples"
