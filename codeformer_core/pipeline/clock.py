"""Timing and progress of a run's stages."""

import contextlib
import time
from collections.abc import Callable, Iterator

Progress = Callable[[float, str], None]
"""progress(fraction in [0, 1], message) — the app turns it into a progress bar."""


class StageClock:
    """Times each named stage into `timings` and tells `progress(fraction, message)` as stages start.

    The fraction is a rough position in the data path (detect < encode < decode < paste), enough for a progress
    bar; repeated stage names (e.g. several decodes) add up.
    """

    _POSITION = {
        "load detector": 0.02, "detect": 0.05, "align": 0.15, "load network": 0.18, "encode": 0.2,
        "decode": 0.5, "face upsample": 0.7, "background": 0.75, "load parser": 0.8, "parse": 0.82, "paste": 0.95,
    }

    def __init__(self, progress: Progress | None = None) -> None:
        self.timings: dict[str, float] = {}
        self._progress = progress

    @contextlib.contextmanager
    def stage(self, name: str, message: str) -> Iterator[None]:
        if self._progress is not None:
            self._progress(self._POSITION.get(name, 0.0), message)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + round(time.perf_counter() - start, 4)

    def download_progress(self, name: str, done_bytes: int, total_bytes: int | None) -> None:
        """A weight download's progress, shown through the same callback."""
        if self._progress is None:
            return
        if total_bytes:
            message = f"Downloading {name}: {done_bytes / 1e6:.0f} of {total_bytes / 1e6:.0f} MB"
            self._progress(done_bytes / total_bytes, message)
        else:
            self._progress(0.0, f"Downloading {name}: {done_bytes / 1e6:.0f} MB")
