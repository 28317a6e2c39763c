"""Settings from the environment, read once at start-up and passed down.

`app.main` and `cli.main` call `Settings.from_env()`; nothing deeper in the engine reads an environment variable,
so what a run does depends only on its arguments. A value that cannot be used is refused here, in one line that
names the variable.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .errors import InvalidOptionError
from .options import check_choice

CpuKernels = Literal["auto", "winograd", "channels-last", "plain"]
CPU_KERNELS: tuple[CpuKernels, ...] = ("auto", "winograd", "channels-last", "plain")
Backend = Literal["auto", "torch", "onnxruntime"]
BACKENDS: tuple[Backend, ...] = ("auto", "torch", "onnxruntime")
FastPrecision = Literal["auto", "bf16", "fp16", "float32"]
FAST_PRECISIONS: tuple[FastPrecision, ...] = ("auto", "bf16", "fp16", "float32")

BACKEND_HELP = ("what runs the network: torch, onnxruntime (needs requirements-onnx.txt) or auto, which is torch on "
                "every device (default $CODEFORMER_BACKEND, else auto)")
FAST_PRECISION_HELP = ("what runs not asked to be exact decode in: auto (bf16 where the device computes it natively, "
                       "else float32), bf16, fp16 or float32; codes are always float32's "
                       "(default $CODEFORMER_FAST_PRECISION, else auto)")

DEFAULT_HUB_REPO = "spaces/sczhou/CodeFormer"
"""The CodeFormer author's Space: download scripts of several projects fetch codeformer.pth from it. Files are
found by name, so its folder layout does not matter; a file it lacks comes from the official release URL."""
DEFAULT_HUB_REVISION = "main"
DEFAULT_HUB_ENDPOINT = "https://huggingface.co"
DEFAULT_WEIGHTS_DIR = Path("weights")
DEFAULT_MAX_VIDEO_SECONDS = 60.0

_TRUE_WORDS = {"1", "ON", "YES", "TRUE", "T"}


def hub_cache_dir(environ: Mapping[str, str]) -> Path:
    """huggingface_hub's cache directory, resolved the way it resolves it: HF_HUB_CACHE, else $HF_HOME/hub."""
    if environ.get("HF_HUB_CACHE"):
        return Path(environ["HF_HUB_CACHE"]).expanduser()
    xdg_cache = environ.get("XDG_CACHE_HOME") or "~/.cache"
    home = environ.get("HF_HOME") or os.path.join(xdg_cache, "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


@dataclass(frozen=True)
class HubSettings:
    """Where pretrained files are looked for on a Hugging Face Hub.

    repo: "owner/name" of a model repo, or "spaces/owner/name" / "datasets/owner/name".
    revision: branch, tag or commit.
    endpoint: the Hub's base URL (a mirror's, for one).
    cache_dir: huggingface_hub's cache, looked into before any download.
    offline: nothing is downloaded; only the weights directory and the cache are used.
    """

    repo: str = DEFAULT_HUB_REPO
    revision: str = DEFAULT_HUB_REVISION
    endpoint: str = DEFAULT_HUB_ENDPOINT
    cache_dir: Path = field(default_factory=lambda: hub_cache_dir({}))
    offline: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "HubSettings":
        """CODEFORMER_HUB_REPO, CODEFORMER_HUB_REVISION and huggingface_hub's own HF_ENDPOINT, HF_HOME,
        HF_HUB_CACHE and HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE, which huggingface_hub also honours)."""
        offline = environ.get("HF_HUB_OFFLINE") or environ.get("TRANSFORMERS_OFFLINE") or ""
        return cls(
            repo=environ.get("CODEFORMER_HUB_REPO") or DEFAULT_HUB_REPO,
            revision=environ.get("CODEFORMER_HUB_REVISION") or DEFAULT_HUB_REVISION,
            endpoint=(environ.get("HF_ENDPOINT") or DEFAULT_HUB_ENDPOINT).rstrip("/"),
            cache_dir=hub_cache_dir(environ),
            offline=_is_true(offline),
        )


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
    on_space: bool = False
    zero_gpu: bool = False

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
            max_video_seconds=_video_seconds(environ.get("CODEFORMER_MAX_VIDEO_SECONDS", "")),
            on_space=bool(environ.get("SPACE_ID")),
            zero_gpu=_is_true(environ.get("SPACES_ZERO_GPU", "")),
        )


def kernels_cache_file(environ: Mapping[str, str]) -> Path:
    """Where the CPU kernel probe keeps its decisions: CODEFORMER_CPU_KERNELS_CACHE, else under XDG_CACHE_HOME."""
    if environ.get("CODEFORMER_CPU_KERNELS_CACHE"):
        return Path(environ["CODEFORMER_CPU_KERNELS_CACHE"]).expanduser()
    cache_home = environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(cache_home).expanduser() / "codeformer" / "cpu-kernels.json"


def _is_true(text: str) -> bool:
    return text.strip().upper() in _TRUE_WORDS


def _video_seconds(text: str) -> float | None:
    text = text.strip()
    if not text:
        return DEFAULT_MAX_VIDEO_SECONDS
    if text.lower() == "none":
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also refuses NaN
        raise InvalidOptionError(
            f'CODEFORMER_MAX_VIDEO_SECONDS must be a number of seconds (0 or "none": no limit); got {text!r}'
        )
    return seconds or None
