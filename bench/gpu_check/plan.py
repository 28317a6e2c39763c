"""What one run of the check measures, at which sizes, on which inputs, and the state its sections share.

Two scales, one code path: `FULL` on a GPU machine, `DRY_RUN` on this CPU (a narrower network, fewer faces, one
repeat), so a mistake in the check shows here rather than in a GPU machine's 15 minutes.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from tests.support.shared_data import DEFAULT_SHARED_DIR

from .report import Result, SectionOutcome
from .timing import Deadline

BENCH_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = BENCH_DIR.parent
SHARED_DIR = DEFAULT_SHARED_DIR
DEFAULT_CARRY = BENCH_DIR / "gpu-carry"
FACES_FILE = Path(__file__).resolve().parent / "faces-00.json"
PHOTO_NAME = "00.jpg"
TASKS = ("restore", "colorize", "inpaint")

GOLDEN_FIDELITIES = {"restore": (0.0, 0.5, 1.0), "colorize": (0.0,), "inpaint": (1.0,)}
"""The w values ../shared/golden/README.md gives reference outputs for."""


@dataclass(frozen=True)
class Scale:
    name: str
    network_width: int | None
    """Channels of the VQGAN's first level; None: the published network (64)."""
    fidelities: dict[str, tuple[float, ...]]
    batches: tuple[int, ...]
    warmup: int
    """Untimed calls before each timed series (cuDNN's handles, kernel choice, the allocator's first blocks)."""
    repeats: int
    """Timed calls per series; the median is reported."""
    photo_faces: int | None
    """How many of the photo's faces are given to the pipeline; None: all of them."""
    photo_modes: tuple[str, ...]
    """"fast" and/or "float32"."""
    candidate: str = "fp16"
    """The other precision a GPU's fast mode could decode in (faster on some GPUs, but its range overflows at high
    w): measured beside the default in the same run, so that one run settles which to use."""


FULL = Scale(
    "full", network_width=None, fidelities=GOLDEN_FIDELITIES, batches=(1, 4, 16), warmup=3, repeats=10,
    photo_faces=None, photo_modes=("fast", "float32"),
)
# Each step at its smallest that still takes every branch: restore without CFT (w 0), inpaint with it and its
# composite (colorize is restore's code with other weights), one batch of more than one face, one photo mode.
DRY_RUN = Scale(
    "dry run", network_width=32, fidelities={"restore": (0.0,), "inpaint": (1.0,)}, batches=(2,), warmup=0,
    repeats=1, photo_faces=1, photo_modes=("fast",),
)


@dataclass(frozen=True)
class Inputs:
    """Where the check reads its inputs: the carried folder on a GPU machine (which has no ../shared), else the
    development checkout's ../shared."""

    golden_dir: Path
    photo: Path
    faces: Path = FACES_FILE

    @classmethod
    def find(cls, carry: Path) -> "Inputs":
        golden = carry / "golden" if (carry / "golden").is_dir() else SHARED_DIR / "golden"
        photo = carry / "samples" / PHOTO_NAME
        return cls(golden, photo if photo.is_file() else SHARED_DIR / "samples" / "whole" / PHOTO_NAME)

    def missing(self) -> list[str]:
        """Every input file that is not there, by path."""
        needed = [self.photo, self.faces] + [
            self.golden_dir / name for task in TASKS
            for name in (f"{task}.keys.json", f"{task}.npz", f"{task}_input.png")
        ]
        return [str(path) for path in needed if not path.is_file()]

    def aligned_faces(self) -> list[np.ndarray]:
        """The three golden inputs as 512 x 512 BGR uint8 faces: the batches cycle through them."""
        return [cv2.imread(str(self.golden_dir / f"{task}_input.png"), cv2.IMREAD_COLOR) for task in TASKS]


@dataclass
class Context:
    """One run's settings and what its sections hand on to each other."""

    device: torch.device
    scale: Scale
    inputs: Inputs
    deadline: Deadline
    work_dir: Path
    results: dict[str, Result] = field(default_factory=dict)
    numbers: dict[str, Any] = field(default_factory=dict)
    """Raw measurements per section, written to gpu_check.json."""
    outcomes: dict[str, SectionOutcome] = field(default_factory=dict)
    pipeline: Any = None
    """The engine's Pipeline, made once by the weights section and used by every later one (CUDA-resident)."""
    reference_ms: float | None = None
    """The reference network's median time per face, for the ratios of the latency rows."""

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    @property
    def measures_candidate(self) -> bool:
        """Whether the candidate decoder precision runs here: on a GPU (a CPU's fast mode has only bf16)."""
        return self.on_gpu

    def faces(self, count: int) -> list[np.ndarray]:
        """`count` aligned faces, cycling through the golden inputs."""
        faces = self.inputs.aligned_faces()
        return [faces[index % len(faces)] for index in range(count)]
