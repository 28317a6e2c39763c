"""What the machine the app runs on can do, decided once at start-up: fast mode's precision, how many requests run at
once, and the one line the page shows about it.

The figures are rounded up from measurements, so that a visitor is never promised too much; bench/README.md
("Measurements behind the engine's constants") has the numbers behind each.
"""

import os
from dataclasses import dataclass

import torch

from .network.cpu_kernels import decide_cpu_kernels
from .network.precision import Precision, fast_mode_precision, precision_summary
from .settings import Settings

CPU_CORE_SECONDS_PER_FACE = 20.0
"""CPU time for one face through detection, both network halves, parsing and paste-back, rounded up from the
measurement in bench/README.md ("Measurements behind the engine's constants")."""
GPU_SECONDS_PER_FACE = 0.1
"""About four times a large GPU's whole-photo time per face in fast mode: room for smaller GPUs and for the work the
GPU check leaves out (detection, the Real-ESRGAN background)."""
GPU_GIB_PER_REQUEST = 4.0
"""One request's peak (four faces batched, ParseNet at 512 px) with room for a Real-ESRGAN tile; a GPU runs total
memory / this many requests at once."""
MAX_GPU_CONCURRENCY = 4
ZERO_GPU_CONCURRENCY = 2
"""Each ZeroGPU call gets its own GPU slice; the Space's own CPU still decodes uploads and writes results."""


@dataclass(frozen=True)
class HardwareProfile:
    """label: the device as a person reads it. fast_precision: what requests not asked to be exact decode in.
    concurrency: requests the queue runs at once. seconds_per_face: what a visitor should expect. cpu_kernels: on
    a CPU, the convolution kernels it runs and how they were chosen."""

    label: str
    fast_precision: Precision
    concurrency: int
    seconds_per_face: float
    cpu_kernels: str | None = None

    @classmethod
    def detect(cls, device: torch.device, settings: Settings) -> "HardwareProfile":
        if settings.zero_gpu:
            # ZeroGPU's GPUs (H200, Blackwell) all compute bf16; CUDA cannot be asked outside a GPU call.
            precision = "bf16" if settings.fast_precision == "auto" else settings.fast_precision
            return cls("ZeroGPU (a shared GPU attached for each request)", precision, ZERO_GPU_CONCURRENCY,
                       GPU_SECONDS_PER_FACE)
        precision = fast_mode_precision(settings.fast_precision, device)
        if device.type == "cuda":
            properties = torch.cuda.get_device_properties(device)
            memory_gib = properties.total_memory / 2**30
            concurrency = max(1, min(MAX_GPU_CONCURRENCY, int(memory_gib // GPU_GIB_PER_REQUEST)))
            return cls(f"{properties.name} ({memory_gib:.0f} GB)", precision, concurrency, GPU_SECONDS_PER_FACE)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        # One CPU request already uses every core: a second would only slow both down.
        kernels = decide_cpu_kernels(settings.cpu_kernels, settings.cpu_kernels_cache).describe()
        return cls(f"CPU ({cores} cores)", precision, 1, CPU_CORE_SECONDS_PER_FACE / cores, kernels)

    def summary(self) -> str:
        """One line for the page: device, precision, expected time per face."""
        if self.seconds_per_face < 1:
            expected = "well under a second per face"
        else:
            expected = f"about {self.seconds_per_face:.0f} s per face"
        kernels = f", {self.cpu_kernels}" if self.cpu_kernels else ""
        return f"Running on {self.label}, {precision_summary(self.fast_precision)}{kernels}: {expected}."

