"""What the GPU machine's Python can import, checked before any device time is spent.

That machine's image has torch, torchvision, numpy, opencv, Pillow, huggingface_hub 1.x and many more, but none
of the app's extras (KINDS.md lists it), and it reaches no package index. bench/gpu_check.sh installs the carried
wheels (bench/gpu-carry/wheels, see prep.py) into a folder it names in GPU_CHECK_SITE. The guard below makes any
machine import like that one: the app's extras are refused, and the carried packages come from that folder alone,
so a dry run here fails where the GPU machine would.
"""

import importlib
import importlib.abc
import importlib.machinery
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from .plan import REPO_ROOT

NOT_ON_DEVICE = (
    "basicsr", "facexlib", "realesrgan", "gfpgan", "gradio", "gradio_client", "dlib", "face_recognition_models",
    "imageio_ffmpeg",
)
"""Requirements of the app that the GPU machine's image lacks and that the check must never need."""

CARRIED = ("huggingface_hub", "httpx2", "httpcore2", "truststore", "spandrel", "spandrel_extra_arches")
"""Top-level modules of the carried wheels: what the engine imports at module level and the image lacks (or has
in another major version: huggingface_hub), and the reference network."""

REFERENCE_MODULE = "spandrel_extra_arches.architectures.CodeFormer"
ENGINE_REMEDY = "Carry its wheel (`make gpu-check-prep`: gpu_check/prep.py) or make the engine's import lazy"
REFERENCE_REMEDY = ("Here: .venv/bin/pip install --no-deps -r bench/requirements.txt; on a GPU machine: carry its "
                    "wheels (`make gpu-check-prep`)")


class _DeviceImageFinder(importlib.abc.MetaPathFinder):
    def __init__(self, site: Path | None) -> None:
        self.site = site

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        top = name.partition(".")[0]
        if top in NOT_ON_DEVICE:
            raise ModuleNotFoundError(f"No module named {name!r}: the GPU machine's image has no {top}", name=name)
        if self.site is None or name not in CARRIED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, [str(self.site)])
        if spec is None:
            raise ModuleNotFoundError(f"No module named {name!r} among the carried wheels ({self.site})", name=name)
        return spec


def guard_imports(site: Path | None) -> None:
    """From now on, import as the GPU machine would; `site`: where gpu_check.sh installed the carried wheels
    (None: no wheels carried, the carried packages come from wherever this Python has them)."""
    sys.meta_path.insert(0, _DeviceImageFinder(site))


def import_problem(module: str, remedy: str) -> str | None:
    """None if `module` imports; else what is missing, which file of ours imports it, and `remedy`."""
    try:
        importlib.import_module(module)
    except ImportError as error:
        ours = [frame for frame in traceback.extract_tb(error.__traceback__)
                if Path(frame.filename).is_file() and Path(frame.filename).resolve().is_relative_to(REPO_ROOT)
                and frame.filename != __file__]
        where = ""
        if ours:
            frame = ours[-1]
            where = f", imported at {Path(frame.filename).resolve().relative_to(REPO_ROOT)}:{frame.lineno}"
        return f"importing {module} failed: {error}{where}. {remedy}"
    return None
