"""Weights for the benchmark, in the official files' formats, made here: no real weights can be downloaded.

- `codeformer.pth`: the golden fill of `../shared/golden/` (`tests/golden.py`), so our network and the reference
  network compute the same function and their outputs can be compared against the golden bounds.
- `detection_Resnet50_Final.pth`: facexlib's RetinaFace ResNet-50 with its default initialisation under a fixed
  seed, every key prefixed `module.` as in the official file (facexlib strips the prefix on load).
- `parsing_parsenet.pth`: facexlib's ParseNet (512 in, 512 out, 19 classes), default initialisation, fixed seed.

Random detector and parser weights cost the same time as the real ones (same layers, same shapes); they only
decide nothing meaningful, which is why the whole-photo benchmark takes its landmarks from dlib (see bench.py).
The files go into a cache directory outside the repository (~570 MB), made once and reused.

The equivalence harness (equivalence.py) runs every official script, so it needs the other four official
files as well (`ensure_equivalence_weights`, ~1.4 GB in all): the colorization and inpainting CodeFormers (golden
fill), RetinaFace MobileNet-0.25 and Real-ESRGAN x2plus (fixed-seed initialisation), written by the test suite's
writers (`tests/support/checkpoint_files.py`).
"""

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from tests.support.golden import write_official_checkpoint

SEED = 20220923  # any fixed value: the files must be the same on every run
CODEFORMER_FILE = "codeformer.pth"
DETECTOR_FILE = "detection_Resnet50_Final.pth"
PARSER_FILE = "parsing_parsenet.pth"
BENCH_FILES = (CODEFORMER_FILE, DETECTOR_FILE, PARSER_FILE)
EQUIVALENCE_EXTRA_FILES = (
    "codeformer_colorization.pth",
    "codeformer_inpainting.pth",
    "detection_mobilenet0.25_Final.pth",
    "RealESRGAN_x2plus.pth",
)
"""Official files the equivalence harness needs beyond the benchmark's three."""


def default_cache_dir() -> Path:
    """$CODEFORMER_BENCH_CACHE, else $XDG_CACHE_HOME/codeformer-bench (~/.cache/codeformer-bench): outside the
    repository, so 570 MB of generated weights can never be committed by accident."""
    explicit = os.environ.get("CODEFORMER_BENCH_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "codeformer-bench"


def ensure_bench_weights(directory: Path, names: tuple[str, ...] = BENCH_FILES) -> Path:
    """Write each of `names` (default: the benchmark's three files) that `directory` lacks; returns `directory`."""
    writers = {CODEFORMER_FILE: partial(write_official_checkpoint, "restore"), DETECTOR_FILE: _write_detector,
               PARSER_FILE: _write_parser}
    return _write_missing(directory, {name: writers[name] for name in names})


def ensure_equivalence_weights(directory: Path) -> Path:
    """The benchmark's three files and `EQUIVALENCE_EXTRA_FILES` in `directory`; returns `directory`."""
    # Imported here: the writers pull in basicsr and facexlib, which bench.py never needs.
    from tests.support.checkpoint_files import WRITERS

    ensure_bench_weights(directory)
    return _write_missing(directory, {name: WRITERS[name] for name in EQUIVALENCE_EXTRA_FILES})


def _write_missing(directory: Path, writers: dict[str, Callable[[Path], object]]) -> Path:
    """Write each file of `writers` that `directory` lacks; returns `directory`.

    Each file is written under a temporary name and renamed, so an interrupted run leaves no half-written file.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for name, write in writers.items():
        target = directory / name
        if target.is_file():
            continue
        partial = target.with_name(target.name + ".partial")
        write(partial)
        os.replace(partial, target)
    return directory


def _write_detector(path: Path) -> None:
    from facexlib.detection.retinaface import RetinaFace

    torch.manual_seed(SEED)
    detector = RetinaFace(network_name="resnet50", device=torch.device("cpu"))
    # The official file was saved from nn.DataParallel, hence the prefix.
    torch.save({f"module.{name}": tensor for name, tensor in detector.state_dict().items()}, path)


def _write_parser(path: Path) -> None:
    from facexlib.parsing.parsenet import ParseNet

    torch.manual_seed(SEED)
    parser = ParseNet(in_size=512, out_size=512, parsing_ch=19)
    torch.save(parser.state_dict(), path)
