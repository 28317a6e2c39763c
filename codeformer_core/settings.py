"""Settings from the environment, read once at start-up and passed down.

`app.main` and `cli.main` call `Settings.from_env()`; nothing deeper in the engine reads an environment variable,
so what a run does depends only on its arguments. A value that cannot be used is refused here, in one line that
names the variable. Each choice is defined where it is used (the backends in `export/backends.py`, fast mode's
precision in `network/precision.py`, the CPU kernels in `network/cpu_kernels.py`); this module only reads them.
"""

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from .checks import check_choice, is_true
from .credentials import Login, logins_from_list
from .errors import InvalidOptionError
from .export.backends import BACKENDS, Backend
from .network.cpu_kernels import CPU_KERNELS, CpuKernels
from .network.precision import FAST_PRECISIONS, FastPrecision
from .weights.hub_settings import HubSettings
from .weights.store import DEFAULT_WEIGHTS_DIR, WeightStore

Number = TypeVar("Number", int, float)

DEFAULT_MAX_VIDEO_SECONDS = 60.0
DEFAULT_MAX_BATCH_PHOTOS = 20


@dataclass(frozen=True)
class Settings:
    """What the environment decides for a whole process.

    weights_dir: where pretrained files are looked up and placed (CODEFORMER_WEIGHTS_DIR).
    cpu_kernels: which convolution kernels the CPU's float32 passes run with: "auto" (timed once on the machine,
      `network/cpu_kernels.py`), "winograd" (NNPACK), "channels-last" (oneDNN on N x H x W x C features) or
      "plain" (torch's defaults) (CODEFORMER_CPU_KERNELS).
    cpu_kernels_cache: where "auto" keeps its decision per machine (CODEFORMER_CPU_KERNELS_CACHE, else
      $XDG_CACHE_HOME/codeformer/cpu-kernels.json, ~/.cache when XDG_CACHE_HOME is unset).
    backend: what runs the CodeFormer network: "torch", "onnxruntime" (its exported graphs; needs
      requirements-onnx.txt), or "auto", which is torch on every device (CODEFORMER_BACKEND).
    fast_precision: what fast mode (every run not asked to be exact) decodes in: "auto", bf16 where the device
      computes it natively and float32 elsewhere; or "bf16", "fp16" (faster on some GPUs without bf16, but its range
      can overflow: such a pass runs again) or "float32" (every run exact) (CODEFORMER_FAST_PRECISION).
    max_video_seconds: the longest video the app accepts, None for no limit (CODEFORMER_MAX_VIDEO_SECONDS;
      0 or "none" lifts it). The command line takes any length.
    max_batch_photos: the most photos one batch of the app may hold, None for no limit
      (CODEFORMER_MAX_BATCH_PHOTOS; 0 or "none" lifts it). The command line takes any number.
    auth: who may use the app, as user:password entries separated by commas (CODEFORMER_AUTH, a Space's secret);
      empty: anyone who reaches it. `app.py --auth` and `--auth-file` add to them. Passwords stay out of repr.
    on_space: running as a Hugging Face Space (SPACE_ID is set): the app listens on every interface and loads its
      models before serving.
    zero_gpu: running on ZeroGPU hardware (SPACES_ZERO_GPU is set): CUDA exists only inside functions decorated
      with `spaces.GPU`, so the app wraps its network calls in them.
    """

    weights_dir: Path = DEFAULT_WEIGHTS_DIR
    hub: HubSettings = field(default_factory=HubSettings)
    cpu_kernels: CpuKernels = "auto"
    cpu_kernels_cache: Path = field(default_factory=lambda: kernels_cache_file({}))
    backend: Backend = "auto"
    fast_precision: FastPrecision = "auto"
    max_video_seconds: float | None = DEFAULT_MAX_VIDEO_SECONDS
    max_batch_photos: int | None = DEFAULT_MAX_BATCH_PHOTOS
    auth: tuple[Login, ...] = ()
    on_space: bool = False
    zero_gpu: bool = False

    def weight_store(self, weights_dir: Path | None = None) -> WeightStore:
        """The store these settings describe; `weights_dir` (a command-line option) overrides theirs."""
        return WeightStore(weights_dir or self.weights_dir, hub=self.hub)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        kernels = environ.get("CODEFORMER_CPU_KERNELS", "auto").strip().lower() or "auto"
        check_choice("CODEFORMER_CPU_KERNELS", kernels, CPU_KERNELS)
        backend = environ.get("CODEFORMER_BACKEND", "auto").strip().lower() or "auto"
        check_choice("CODEFORMER_BACKEND", backend, BACKENDS)
        fast_precision = environ.get("CODEFORMER_FAST_PRECISION", "auto").strip().lower() or "auto"
        check_choice("CODEFORMER_FAST_PRECISION", fast_precision, FAST_PRECISIONS)
        return cls(
            weights_dir=Path(environ.get("CODEFORMER_WEIGHTS_DIR") or DEFAULT_WEIGHTS_DIR).expanduser(),
            hub=HubSettings.from_env(environ),
            cpu_kernels=kernels,  # type: ignore[arg-type] - checked against CPU_KERNELS just above
            cpu_kernels_cache=kernels_cache_file(environ),
            backend=backend,  # type: ignore[arg-type] - checked against BACKENDS just above
            fast_precision=fast_precision,  # type: ignore[arg-type] - checked against FAST_PRECISIONS just above
            max_video_seconds=_limit(environ, "CODEFORMER_MAX_VIDEO_SECONDS", DEFAULT_MAX_VIDEO_SECONDS, float,
                                     "a number of seconds"),
            max_batch_photos=_limit(environ, "CODEFORMER_MAX_BATCH_PHOTOS", DEFAULT_MAX_BATCH_PHOTOS, int,
                                    "a whole number of photos"),
            auth=logins_from_list(environ.get("CODEFORMER_AUTH", ""), "CODEFORMER_AUTH"),
            on_space=bool(environ.get("SPACE_ID")),
            zero_gpu=is_true(environ.get("SPACES_ZERO_GPU", "")),
        )


def kernels_cache_file(environ: Mapping[str, str]) -> Path:
    """Where the CPU kernel probe keeps its decisions: CODEFORMER_CPU_KERNELS_CACHE, else under XDG_CACHE_HOME."""
    if environ.get("CODEFORMER_CPU_KERNELS_CACHE"):
        return Path(environ["CODEFORMER_CPU_KERNELS_CACHE"]).expanduser()
    cache_home = environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(cache_home).expanduser() / "codeformer" / "cpu-kernels.json"


def _limit(
    environ: Mapping[str, str], variable: str, default: Number, number: Callable[[str], Number], unit: str
) -> Number | None:
    """A limit read from `variable`: its default when unset, None (no limit) for 0 or "none"."""
    text = environ.get(variable, "").strip()
    if not text:
        return default
    if text.lower() == "none":
        return None
    try:
        value: Number | None = number(text)
    except ValueError:
        value = None
    if value is None or not value >= 0:  # also refuses NaN
        raise InvalidOptionError(f'{variable} must be {unit} (0 or "none": no limit); got {text!r}')
    return value or None
