"""Where a request's PNGs are written, and when they are removed.

Each request gets a fresh directory with a random name, so two requests never share a file and no user-supplied
name reaches the file system. Gradio copies every file a handler returns into its own cache before answering
(that cache is emptied by `delete_cache`), so our copies only have to outlive the response: directories older
than `keep_seconds` are removed when a later request starts, and the whole root when the process exits.
"""

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

DEFAULT_KEEP_SECONDS = 600


class RequestFiles:
    def __init__(self, keep_seconds: float = DEFAULT_KEEP_SECONDS) -> None:
        # TemporaryDirectory removes the root at interpreter exit, or when this object is collected.
        self._root = tempfile.TemporaryDirectory(prefix="codeformer-app-")
        self.root = Path(self._root.name)
        self.keep_seconds = keep_seconds

    def new_request(self) -> Path:
        """A new empty directory for one request's outputs."""
        self._remove_old()
        directory = self.root / uuid.uuid4().hex
        directory.mkdir()
        return directory

    def keep_alive(self, directory: Path) -> None:
        """Mark `directory` as still in use: old directories are found by their age, and a request that keeps
        writing for longer than `keep_seconds` (a long video) must not lose its directory to a later request's
        sweep. Call it as the request makes progress."""
        os.utime(directory)

    def _remove_old(self) -> None:
        cutoff = time.time() - self.keep_seconds
        for directory in self.root.iterdir():
            try:
                expired = directory.stat().st_mtime < cutoff
            except FileNotFoundError:  # removed by a concurrent request
                continue
            if expired:
                shutil.rmtree(directory, ignore_errors=True)
