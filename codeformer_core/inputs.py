"""Which files the command line takes as photos and videos, and how its input paths become a list of files."""

from collections.abc import Sequence
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".webm", ".mkv"})
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES


def collect_inputs(paths: Sequence[Path]) -> tuple[list[Path], list[str]]:
    """Files as given, folders expanded to their photos and videos (sorted); missing paths become error lines."""
    files, errors = [], []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES))
        elif path.is_file():
            files.append(path)
        else:
            errors.append(f"{path}: no such file or folder")
    return files, errors


def nothing_found(paths: Sequence[Path]) -> str:
    """The error line for inputs that name no photo or video at all."""
    return f"no images or videos found in {', '.join(map(str, paths))}"
