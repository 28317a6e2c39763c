"""Where an archive job's data enters Ray Data: the bytes of photo files and the frames of a video, read on the
node of the process that runs the job (`supports_distributed_reads` is False), so inputs need not be on a shared
filesystem. Each read task yields small blocks as it goes, so Ray Data's backpressure keeps reading only a little
ahead of the actors.
"""

from collections.abc import Iterator, Sequence
from contextlib import closing
from fractions import Fraction
from functools import partial
from itertools import islice
from pathlib import Path

import numpy as np
import pyarrow as pa
from ray.data import DataContext, Datasource, ReadTask
from ray.data.block import BlockAccessor, BlockMetadata

from ..errors import InvalidImageError
from ..images import read_bytes
from ..video_files import decoded_frames


class _ReadHere(Datasource):
    """Read by tasks on the node of the process that runs the job: its files need to be there only."""

    @property
    def supports_distributed_reads(self) -> bool:
        return False

    def get_name(self) -> str:
        return type(self).__name__

    def estimate_inmemory_data_size(self) -> int | None:
        return None


class PhotoFiles(_ReadHere):
    """Rows index, data, error: the bytes of `paths[index]` (refused, as `read_image` refuses, when empty or over
    its byte limit: then data is empty and error says why); `per_task` files to a read task."""

    def __init__(self, paths: Sequence[Path], per_task: int) -> None:
        super().__init__()
        self.paths = [str(path) for path in paths]
        self.per_task = per_task

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: DataContext | None = None
    ) -> list[ReadTask]:
        starts = range(0, len(self.paths), self.per_task)
        return [
            ReadTask(
                partial(_read_photos, self.paths[start : start + self.per_task], start),  # its own paths only
                BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None),
            )
            for start in starts
        ]


class VideoFrames(_ReadHere):
    """Rows index, frame: the frames of one video as the single-process video path decodes them (H x W x 3 uint8
    RGB, resampled to `fps`), in order, in blocks of `chunk` frames, from one read task: the video is decoded
    once."""

    def __init__(self, source: Path, size: tuple[int, int], fps: Fraction, chunk: int) -> None:
        super().__init__()
        self.source, self.size, self.fps, self.chunk = source, size, fps, chunk

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: DataContext | None = None
    ) -> list[ReadTask]:
        read = partial(_read_frames, self.source, self.size, self.fps, self.chunk)
        return [ReadTask(read, BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None))]


def _read_photos(paths: list[str], first_index: int) -> Iterator[pa.Table]:
    for index, path in enumerate(paths, start=first_index):
        try:
            data, error = read_bytes(path), ""
        except InvalidImageError as refused:
            data, error = b"", str(refused)
        yield pa.table({"index": [index], "data": pa.array([data], pa.binary()), "error": [error]})


def _read_frames(source: Path, size: tuple[int, int], fps: Fraction, chunk: int) -> Iterator[pa.Table]:
    with closing(decoded_frames(source, size, fps)) as frames:
        start = 0
        while group := list(islice(frames, chunk)):
            indices = np.arange(start, start + len(group))
            yield BlockAccessor.batch_to_block({"index": indices, "frame": np.stack(group)})
            start += len(group)
