"""`python -m codeformer_core download`: fetch the pretrained files ahead of time, e.g. before going offline.

Prints one line per file, `<name>: <path> (<where it came from>)`, with a tqdm bar on stderr while a file
downloads. Exit code 0 when every file is in place, 1 otherwise (each failure gets one line on stderr).
"""

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from ..errors import WeightsError
from ..layouts import TASKS
from ..options import BACKGROUNDS, DETECTORS, RestoreOptions
from ..settings import Settings
from ..weights.registry import REGISTRY, files_needed
from ..weights.sources import DownloadProgress


def add_download_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--task", choices=[*TASKS, "all"], default="restore",
        help="the task to prepare for (default restore); all = every file the app can use",
    )
    parser.add_argument("--detector", choices=DETECTORS, default="retinaface_resnet50",
                        help="the face detector to prepare for (dlib needs no download)")
    parser.add_argument("--bg-upsampler", choices=BACKGROUNDS, default="none",
                        help="also fetch the background upsampler (realesrgan)")
    parser.add_argument("--weights-dir", type=Path,
                        help="where the files go (default: $CODEFORMER_WEIGHTS_DIR, else ./weights)")


def requested_files(args: argparse.Namespace) -> list[str]:
    if args.task == "all":
        return list(REGISTRY)
    return files_needed(RestoreOptions(task=args.task, detector=args.detector, background=args.bg_upsampler))


def tqdm_progress() -> tuple[DownloadProgress, dict[str, tqdm]]:
    """A download progress callback that draws one tqdm bar per file, and the bars (to close them at the end)."""
    bars: dict[str, tqdm] = {}

    def report(name: str, done: int, total: int | None) -> None:
        bar = bars.get(name)
        if bar is None:
            bar = bars[name] = tqdm(total=total, desc=name, unit="B", unit_scale=True, unit_divisor=1024, leave=False)
        bar.update(done - bar.n)

    return report, bars


def run_download(args: argparse.Namespace, settings: Settings) -> int:
    store = settings.weight_store(args.weights_dir)
    progress, bars = tqdm_progress()
    failures = 0
    for name in requested_files(args):
        try:
            path = store.path(name, progress)
        except WeightsError as error:
            failures += 1
            print(f"error: {error}", file=sys.stderr)
            continue
        finally:
            if name in bars:
                bars.pop(name).close()
        print(f"{name}: {path} ({store.origin(name)})")
    return 1 if failures else 0
