"""Many photos in one request: each through the pipeline with the same options, one PNG each, plus one zip.

A photo that fails (not an image, too large, ...) becomes one error line naming it; the others still finish.
A problem with the model files is not the photo's fault and stops the batch.
File names come from users, so they only ever contribute a sanitised stem to the names we write.
"""

import os
import uuid
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CodeFormerError, InvalidOptionError, WeightsError
from .images import read_image, safe_stem, write_png
from .options import RestoreOptions
from .pipeline import ImageRestorer, RestoreRequest
from .report import Report

BatchSource = bytes | str | os.PathLike
"""One photo: the file's bytes or its path."""

BatchProgress = Callable[[int, int, str], None]
"""progress(i, n, name): photo i (1-based) of n, named `name`, is starting."""


@dataclass
class BatchItem:
    """A photo that was processed. name: the user's file name, for display only; output: the PNG we wrote."""

    name: str
    output: Path
    report: Report


@dataclass
class BatchResult:
    """items in input order; errors: one "name: reason" line per failed photo; archive: the zip of every output,
    None when no photo succeeded."""

    items: list[BatchItem] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    archive: Path | None = None

    def summary(self) -> str:
        total = len(self.items) + len(self.errors)
        faces = sum(item.report.faces_restored for item in self.items)
        lines = [f"{len(self.items)} of {total} photo(s) done, {faces} face(s) processed."]
        if self.errors:
            lines.append(f"{len(self.errors)} photo(s) failed:")
            lines.extend(self.errors)
        return "\n".join(lines)


def run_batch(
    restorer: ImageRestorer,
    inputs: Sequence[tuple[str, BatchSource]],
    options: RestoreOptions,
    directory: Path,
    *,
    progress: BatchProgress | None = None,
    max_photos: int | None = None,
) -> BatchResult:
    """Process (name, source) pairs in order, writing each result as a new PNG in `directory` (which must exist)
    and then a zip of all of them, named "<i>_<stem>.png" inside it. More than `max_photos` pairs (None: no limit)
    are refused before any photo runs."""
    if max_photos is not None and len(inputs) > max_photos:
        raise InvalidOptionError(
            f"A batch holds at most {max_photos} photos; got {len(inputs)}. Split it into smaller batches."
        )
    directory = Path(directory)
    result = BatchResult()
    for index, (name, source) in enumerate(inputs, start=1):
        if progress is not None:
            progress(index, len(inputs), name)
        try:
            restored = restorer.run(RestoreRequest(read_image(source), options))
        except WeightsError:
            raise  # a missing or broken model file fails every photo alike: one clear error, not one per photo
        except CodeFormerError as error:
            result.errors.append(f"{name}: {error}")
            continue
        output = write_png(restored.image, directory, name)
        result.items.append(BatchItem(name, output, restored.report))
    if result.items:
        result.archive = write_archive(result.items, directory)
    return result


def write_archive(items: Sequence[BatchItem], directory: Path) -> Path:
    """A new zip in `directory` holding each item's PNG as "<position>_<safe stem>.png" (unique by position)."""
    archive = Path(directory) / f"codeformer-results-{uuid.uuid4().hex[:12]}.zip"
    width = max(3, len(str(len(items))))
    # PNG is already deflated: storing avoids compressing it a second time for nothing.
    with zipfile.ZipFile(archive, "x", compression=zipfile.ZIP_STORED) as bundle:
        for position, item in enumerate(items, start=1):
            stem = safe_stem(item.name) or "photo"
            bundle.write(item.output, arcname=f"{position:0{width}d}_{stem}.png")
    return archive
