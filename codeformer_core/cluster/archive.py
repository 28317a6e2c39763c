"""An archive job's files: the inputs a job is given, the outputs it owes, and which of those are already done.

Inputs are folders (their photos and videos, as the single-process command line lists them), quoted globs
(`'scans/**/*.jpg'`, expanded here, `**` recursing), list files (a `.txt` suffix: one path per line, relative ones
from the list's folder, blank lines and `#` comments skipped) and plain files. Outputs are named as the
single-process command line names them, `<stem>.png` and `<stem>.mp4` in the output folder; two inputs that would
share one are refused before any work.

Outputs are written under a temporary name and renamed, so a present output is a complete one. A killed job can
still leave its temporary files (removed when the next job starts) and an output written by another tool may be
cut short: an existing PNG counts as done only when it ends with PNG's closing chunk, an existing mp4 only when
its container can be read.
"""

import glob
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import files
from ..errors import InvalidImageError, InvalidOptionError
from ..files import hidden_sibling
from ..inputs import MEDIA_SUFFIXES, VIDEO_SUFFIXES, collect_inputs
from ..video_files import probe_video

LIST_SUFFIX = ".txt"
_GLOB_CHARACTERS = ("*", "?", "[")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_PARTIAL = re.compile(r"^\..+\.[0-9a-f]{32}\.partial(\.\w+)?$")


@dataclass
class Plan:
    """What a job has to do. photos and videos: (input, output) pairs still to do, in input order; skipped: inputs
    whose output is already complete; errors: "input: reason" lines for inputs that cannot be read at all."""

    photos: list[tuple[Path, Path]] = field(default_factory=list)
    videos: list[tuple[Path, Path]] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def plan_job(inputs: Sequence[Path], output_dir: Path) -> Plan:
    """The job's files (see the module's docstring); InvalidOptionError when two inputs would share an output or
    one would be overwritten by its own."""
    files, errors = expand_inputs(inputs)
    plan = Plan(errors=errors)
    destinations: dict[Path, Path] = {}
    for source in files:
        is_video = source.suffix.lower() in VIDEO_SUFFIXES
        destination = output_dir / f"{source.stem}{'.mp4' if is_video else '.png'}"
        _check_destination(source, destination, destinations)
        destinations[destination] = source
        if is_complete(destination):
            plan.skipped.append(source)
        else:
            (plan.videos if is_video else plan.photos).append((source, destination))
    return plan


def expand_inputs(inputs: Sequence[Path]) -> tuple[list[Path], list[str]]:
    """Every input file once, in the order given (a folder's and a glob's sorted), and an error line for each
    input that names nothing."""
    paths, errors = [], []
    for given in inputs:
        if given.suffix.lower() == LIST_SUFFIX and given.is_file():
            paths.extend(_listed(given))
        elif not given.exists() and any(mark in str(given) for mark in _GLOB_CHARACTERS):
            matches = [Path(match) for match in sorted(glob.glob(str(given), recursive=True))]
            media = [path for path in matches if path.is_file() and _is_media(path)]
            if not media:
                errors.append(f"{given}: no photo or video matches this pattern")
            paths.extend(media)
        else:
            paths.append(given)
    files, missing = collect_inputs(paths)
    seen: set[Path] = set()
    unique = []
    for path in files:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append(path)
    return unique, errors + missing


def is_complete(output: Path) -> bool:
    """Whether an existing output can be trusted as finished (see the module's docstring)."""
    if not output.is_file():
        return False
    if output.suffix == ".png":
        with open(output, "rb") as file:
            start = file.read(len(_PNG_SIGNATURE))
            file.seek(0, os.SEEK_END)
            if file.tell() < len(_PNG_SIGNATURE) + len(_PNG_END):
                return False
            file.seek(-len(_PNG_END), os.SEEK_END)
            return start == _PNG_SIGNATURE and file.read() == _PNG_END
    try:
        probe_video(output)
    except InvalidImageError:
        return False
    return True


def partial_path(output: Path) -> Path:
    """A new hidden name beside `output` to write it under before renaming; it keeps the suffix, which is how
    ffmpeg picks a container."""
    return hidden_sibling(output, f"{uuid.uuid4().hex}.partial{output.suffix}")


def write_atomically(output: Path, data: bytes) -> None:
    """`output` holds `data` completely or is left as it was."""
    files.write_atomically(output, data, partial_path(output))


def remove_leftovers(output_dir: Path) -> int:
    """Delete the temporary files a killed job left in `output_dir` (only names `partial_path` makes); how many."""
    if not output_dir.is_dir():
        return 0
    leftovers = [path for path in output_dir.iterdir() if path.is_file() and _PARTIAL.match(path.name)]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return len(leftovers)


def _listed(list_file: Path) -> list[Path]:
    try:
        lines = list_file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidOptionError(f"{list_file}: not a readable list of paths ({error}).") from error
    entries = [line.strip() for line in lines]
    return [list_file.parent / entry for entry in entries if entry and not entry.startswith("#")]


def _is_media(path: Path) -> bool:
    return path.suffix.lower() in MEDIA_SUFFIXES


def _check_destination(source: Path, destination: Path, taken: dict[Path, Path]) -> None:
    if destination in taken:
        raise InvalidOptionError(
            f"{taken[destination]} and {source} would both be written as {destination}; rename one or run them"
            " separately."
        )
    if destination.resolve() == source.resolve():
        raise InvalidOptionError(f"{source} would be overwritten by its own result; choose another output folder.")
