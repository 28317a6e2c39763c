"""What every source of pretrained files shares: how a fetch reports, fails and puts a file in place.

A fetch either leaves the file at its target path or raises `SourceUnavailable` (this source cannot provide the
file: asking it again is pointless) or `TransferFailed` (the transfer was cut short: one more try may succeed).
Policy (which source, when to fetch again, how to verify) lives in `store.py`.
"""

import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from threading import Lock

from ..errors import WeightsUnavailableError
from ..files import hidden_sibling, replaced_atomically

DownloadProgress = Callable[[str, int, int | None], None]
"""Called as bytes arrive: (file name, bytes received so far, total bytes or None when the server does not say)."""

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
RETRY_AFTER = 60.0
"""Seconds during which a source that just failed is not asked again (a long-running app retries after that)."""


class SourceUnavailable(WeightsUnavailableError):
    """The source cannot provide the file (unreachable, no such repo, revision or file)."""


class TransferFailed(WeightsUnavailableError):
    """The transfer started but did not complete; fetching once more may succeed."""


@dataclass(frozen=True)
class Fetched:
    """What a source claims about the bytes it delivered, for verification.

    origin: where the bytes came from, for messages. size, sha256: the source's own figures, or None.
    """

    origin: str
    size: int | None
    sha256: str | None


def temporary_path(target: Path) -> Path:
    """A hidden name beside `target` for bytes that are not yet in place."""
    return hidden_sibling(target, f"{uuid.uuid4().hex[:8]}.part")


def place_file(source: Path, target: Path) -> None:
    """Put `source`'s bytes at `target` atomically: a hard link when both sit on one filesystem (no second copy
    of a 350 MB file, and the weights directory keeps working if the Hugging Face cache is cleared), else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(target, temporary_path(target)) as temporary:
        try:
            os.link(source.resolve(), temporary)
        except OSError:
            shutil.copyfile(source.resolve(), temporary)


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class RecentFailures:
    """Sources that just failed to answer, remembered for RETRY_AFTER seconds so that the next file fails at
    once instead of waiting for the same timeout again."""

    def __init__(self) -> None:
        self._lock = Lock()
        self._failures: dict[str, tuple[float, str]] = {}

    def check(self, key: str) -> None:
        with self._lock:
            failure = self._failures.get(key)
        if failure is not None and time.monotonic() - failure[0] < RETRY_AFTER:
            raise SourceUnavailable(failure[1])

    def record(self, key: str, reason: str) -> None:
        with self._lock:
            self._failures[key] = (time.monotonic(), reason)
