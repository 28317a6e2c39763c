"""Downloads from plain HTTPS URLs: the official GitHub release assets, the last resort after the Hub."""

import os
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
from huggingface_hub.errors import OfflineModeIsEnabled
from huggingface_hub.utils import get_session

from .sources import (
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    DownloadProgress,
    Fetched,
    RecentFailures,
    SourceUnavailable,
    TransferFailed,
    describe,
    temporary_path,
)

URL_CHUNK_BYTES = 1 << 20


class ReleaseUrls:
    """Downloads from plain HTTPS URLs (the official GitHub releases), giving up at once on a host that just
    failed to answer."""

    def __init__(self) -> None:
        self._failures = RecentFailures()

    def fetch(self, name: str, url: str, target: Path, progress: DownloadProgress | None) -> Fetched:
        """Stream `url` into a temporary file next to `target`, then move it into place."""
        host = urlsplit(url).netloc
        self._failures.check(host)
        report = progress or (lambda _name, _done, _total: None)
        temporary = temporary_path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        started = False
        total: int | None = None
        done = 0
        try:
            with get_session().stream(
                "GET", url, timeout=httpx2.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT), follow_redirects=True,
            ) as response:
                if response.status_code != 200:
                    raise SourceUnavailable(f"{url} answered HTTP {response.status_code}")
                started = True
                length = response.headers.get("Content-Length")
                total = int(length) if length is not None and length.isdigit() else None
                with temporary.open("wb") as out:
                    for chunk in response.iter_bytes(URL_CHUNK_BYTES):
                        out.write(chunk)
                        done += len(chunk)
                        report(name, done, total)
            if total is not None and done != total:
                raise TransferFailed(f"the download from {url} stopped at {done} of {total} bytes")
            os.replace(temporary, target)
        except (httpx2.HTTPError, OfflineModeIsEnabled) as error:
            if started:
                raise TransferFailed(f"the download from {url} broke off ({describe(error)})") from None
            reason = f"{host} could not be reached ({describe(error)})"
            self._failures.record(host, reason)
            raise SourceUnavailable(reason) from None
        finally:
            temporary.unlink(missing_ok=True)
        return Fetched(origin=url, size=total, sha256=None)
