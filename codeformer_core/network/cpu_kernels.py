"""Which convolution kernels a CPU runs the networks' float32 passes with, chosen by timing them on that CPU.

Why measure: NNPACK's Winograd kernels halved the network's convolution time on an AVX2-only CPU and lost to oneDNN
on an AVX-512/AMX one, where oneDNN's channels_last kernels won (bench/README.md). No fixed choice suits every CPU,
so a short probe times one 3x3 convolution of the networks' typical shapes with each kernel and keeps the fastest;
on a CPU with native bf16 it times each choice's bf16 convolution as well, since fast mode decodes in bf16 there
(oneDNN's bf16 kernels ran several times faster on channels_last features).
The decision is kept in a small JSON file keyed by the CPU, torch's version and the thread count, so a machine
probes once; delete the file to probe again, or set CODEFORMER_CPU_KERNELS to force a choice.

What each choice does (`pipeline/models.py` applies it):
- "winograd": 3x3 convolutions through NNPACK's Winograd kernels, 1x1 as one GEMM (`cpu_convolutions.py`);
- "channels-last": oneDNN's kernels on N x H x W x C features for the whole network and ParseNet (the encoder's
  norms sum their statistics precisely, `vqgan.PreciseGroupNorm`, which keeps its logits within the golden bound);
- "plain": torch's defaults.
A reduced-precision pass takes oneDNN's kernels whatever the choice (NNPACK computes float32 only), in the layout
the choice gives.
"""

import json
import logging
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from ..compat import cpu_has_native_bf16, nnpack_available, nnpack_convolution

logger = logging.getLogger(__name__)

KernelChoice = Literal["winograd", "channels-last", "plain"]
KERNEL_CHOICES: tuple[KernelChoice, ...] = ("winograd", "channels-last", "plain")
CpuKernels = Literal["auto", "winograd", "channels-last", "plain"]
CPU_KERNELS: tuple[CpuKernels, ...] = ("auto", *KERNEL_CHOICES)
"""A setting: a choice, or "auto" for the probe's."""
PROBE_CONVOLUTIONS = ((128, 128), (64, 256))
"""(channels, side) of the 3x3 convolutions timed: the decoder's and ParseNet's most frequent costly shapes."""
PROBE_REPEATS = 3


@dataclass(frozen=True)
class CpuKernelDecision:
    kernels: KernelChoice
    how: str
    """"probed on this machine", "probed on this machine on <date>" (from the cache) or "set by
    CODEFORMER_CPU_KERNELS"."""
    timings_ms: dict[str, float]
    """The probe's time per choice (the sum over PROBE_CONVOLUTIONS); empty when the choice was forced."""

    def describe(self) -> str:
        """A few words for the page and the report, e.g. "channels-last kernels (probed on this machine)"."""
        return f"{self.kernels} kernels ({self.how})"


_decisions: dict[tuple[CpuKernels, Path | None], CpuKernelDecision] = {}
_lock = threading.Lock()


def decide_cpu_kernels(requested: CpuKernels, cache_file: Path | None) -> CpuKernelDecision:
    """The kernels this process's CPU passes run with: `requested` unless "auto"; then the decision cached in
    `cache_file` for this machine, else a probe (written back to `cache_file`). Made once per process."""
    key = (requested, cache_file)
    with _lock:
        if key not in _decisions:
            _decisions[key] = _decide(requested, cache_file)
        return _decisions[key]


def _decide(requested: CpuKernels, cache_file: Path | None) -> CpuKernelDecision:
    if requested != "auto":
        return CpuKernelDecision(requested, "set by CODEFORMER_CPU_KERNELS", {})
    machine = machine_key()
    cached = _read_cache(cache_file).get(machine)
    if cached is not None and cached.get("kernels") in _available_choices():
        return CpuKernelDecision(cached["kernels"], f"probed on this machine on {cached['probed']}",
                                 cached.get("timings_ms", {}))
    timings = probe_timings()
    kernels = min(timings, key=timings.__getitem__)
    _write_cache(cache_file, machine, {"kernels": kernels, "timings_ms": timings,
                                       "probed": datetime.now(UTC).strftime("%Y-%m-%d")})
    return CpuKernelDecision(kernels, "probed on this machine", timings)


def probe_timings() -> dict[KernelChoice, float]:
    """Milliseconds per kernel choice for one 3x3 convolution of each PROBE_CONVOLUTIONS shape (the best of
    PROBE_REPEATS runs after one warm-up), in float32 and, where the CPU has native bf16, in bf16, summed.
    Winograd only where this torch has NNPACK."""
    totals: dict[KernelChoice, float] = dict.fromkeys(_available_choices(), 0.0)
    dtypes = (torch.float32, torch.bfloat16) if cpu_has_native_bf16() else (torch.float32,)
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for channels, side in PROBE_CONVOLUTIONS:
            x = torch.randn(1, channels, side, side, generator=generator)
            weight = torch.randn(channels, channels, 3, 3, generator=generator) / (3 * channels**0.5)
            for dtype in dtypes:
                for choice, run in _convolutions(x.to(dtype), weight.to(dtype), "winograd" in totals).items():
                    totals[choice] += _best_ms(run)
    return totals


def _convolutions(x: torch.Tensor, weight: torch.Tensor, winograd: bool) -> dict[KernelChoice, Callable[[], object]]:
    """The same padded 3x3 convolution of `x` by each kernel choice, as a pass at x's precision runs it."""
    x_last = x.contiguous(memory_format=torch.channels_last)
    weight_last = weight.contiguous(memory_format=torch.channels_last)
    runs: dict[KernelChoice, Callable[[], object]] = {
        "plain": lambda: F.conv2d(x, weight, padding=1),
        "channels-last": lambda: F.conv2d(x_last, weight_last, padding=1),
    }
    if winograd:
        float32 = x.dtype == torch.float32
        runs["winograd"] = (lambda: nnpack_convolution(x, weight, None, (1, 1))) if float32 else runs["plain"]
    return runs


def _best_ms(run: Callable[[], object]) -> float:
    run()
    times = []
    for _ in range(PROBE_REPEATS):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def _available_choices() -> tuple[KernelChoice, ...]:
    return KERNEL_CHOICES if nnpack_available() else tuple(c for c in KERNEL_CHOICES if c != "winograd")


def machine_key() -> str:
    """What a decision holds for: the CPU's model name, torch's version and how many threads torch uses."""
    return f"{_cpu_model()} | torch {torch.__version__} | {torch.get_num_threads()} threads"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _read_cache(cache_file: Path | None) -> dict[str, dict]:
    if cache_file is None:
        return {}
    try:
        data = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # no file yet, or one a crash left half-written: probe again
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(cache_file: Path | None, machine: str, decision: dict) -> None:
    """Keep the decision; a cache that cannot be written only means probing again next start."""
    if cache_file is None:
        return
    data = _read_cache(cache_file)
    data[machine] = decision
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        partial = cache_file.with_suffix(".partial")
        partial.write_text(json.dumps(data, indent=1), encoding="utf-8")
        partial.replace(cache_file)
    except OSError as error:
        logger.warning("CPU kernels: the probe's decision could not be kept in %s (%s)", cache_file, error)
