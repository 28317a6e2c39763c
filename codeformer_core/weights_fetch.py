"""Getting one pretrained file onto local disk, from a Hugging Face Hub repo or from its official release URL.

Policy (which source, when to fetch again, how to verify) lives in `weights.py`; this module only moves bytes.
A fetch either leaves the file at its target path or raises `SourceUnavailable` (this source cannot provide the
file: asking it again is pointless) or `TransferFailed` (the transfer was cut short: one more try may succeed).

The user's `HF_ENDPOINT`, `HF_HOME`, `HF_HUB_CACHE` and `HF_HUB_OFFLINE` are read at each call, not when
huggingface_hub is imported, so a setting made after start-up (or by a test) is honoured.

Why the file list is fetched here rather than with `HfApi.list_repo_files`: that call retries a dead connection
with back-off for ~20 s, and `hf_hub_download` retries a failed HEAD with a 60 s timeout when nothing is cached.
One GET with a 5 s connect timeout tells quickly whether the Hub answers at all; only then is `hf_hub_download`
asked for the file.
"""

import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from threading import Lock
from urllib.parse import quote, urlsplit

import httpx2
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from .errors import InvalidOptionError, WeightsUnavailableError

DownloadProgress = Callable[[str, int, int | None], None]
"""Called as bytes arrive: (file name, bytes received so far, total bytes or None when the server does not say)."""

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
RETRY_AFTER = 60.0
"""Seconds during which a source that just failed is not asked again (a long-running app retries after that)."""
URL_CHUNK_BYTES = 1 << 20
DEFAULT_ENDPOINT = "https://huggingface.co"
_COMMIT_HASH = re.compile(r"[0-9a-f]{40}")
_REPO_TYPE_PREFIXES = {"models/": "model", "datasets/": "dataset", "spaces/": "space"}


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


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_cache_dir() -> Path:
    """huggingface_hub's cache directory, resolved the way it resolves it: HF_HUB_CACHE, else $HF_HOME/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    xdg_cache = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    home = os.environ.get("HF_HOME") or os.path.join(xdg_cache, "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def parse_repo(spec: str) -> tuple[str, str]:
    """("owner/name", repo type) from "owner/name", "spaces/owner/name" or "datasets/owner/name" (as in Hub URLs)."""
    repo_type = "model"
    for prefix, kind in _REPO_TYPE_PREFIXES.items():
        if spec.startswith(prefix):
            spec, repo_type = spec[len(prefix) :], kind
    if len(spec.split("/")) != 2 or not all(spec.split("/")):
        raise InvalidOptionError(
            f"Hub repo must look like owner/name, spaces/owner/name or datasets/owner/name; got {spec!r}"
        )
    return spec, repo_type


def place_file(source: Path, target: Path) -> None:
    """Put `source`'s bytes at `target` atomically: a hard link when both sit on one filesystem (no second copy
    of a 350 MB file, and the weights directory keeps working if the Hugging Face cache is cleared), else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        try:
            os.link(source.resolve(), temporary)
        except OSError:
            shutil.copyfile(source.resolve(), temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _progress_bar_class(name: str, progress: DownloadProgress | None) -> type:
    """A stand-in for tqdm inside huggingface_hub that forwards byte counts to `progress` instead of drawing."""
    report = progress or (lambda _name, _done, _total: None)

    class _ProgressBar:
        def __init__(self, *_args: object, total: int | None = None, initial: int = 0, **_kwargs: object) -> None:
            self.total = total
            self.n = initial

        def update(self, n: int = 1) -> None:
            self.n += n
            report(name, self.n, self.total)

        def close(self) -> None:
            pass

        def __enter__(self) -> "_ProgressBar":
            return self

        def __exit__(self, *_exc_info: object) -> None:
            self.close()

    return _ProgressBar


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


class HubRepo:
    """One repo on a Hugging Face Hub, where files are found by name wherever the mirror keeps them.

    spec: "owner/name" (a model repo), "spaces/owner/name" or "datasets/owner/name".
    paths: file name -> path in the repo, for mirrors that rename files or hold two copies.
    Downloads go to huggingface_hub's cache and are then linked into the target path.
    """

    def __init__(self, spec: str, revision: str, paths: dict[str, str]) -> None:
        self.spec = spec
        self.repo_id, self.repo_type = parse_repo(spec)
        self.revision = revision
        self.paths = dict(paths)
        self._lock = Lock()
        self._listing: dict[str, RepoFile] | None = None
        self._failures = RecentFailures()

    @property
    def label(self) -> str:
        return f"Hub repo {self.spec}@{self.revision} at {hub_endpoint()}"

    def cached(self, name: str) -> Path | None:
        """The file in huggingface_hub's cache for this repo and revision, found without any network."""
        folder = hub_cache_dir() / repo_folder_name(repo_id=self.repo_id, repo_type=self.repo_type)
        commit = self.revision
        if not _COMMIT_HASH.fullmatch(commit):
            ref = folder / "refs" / self.revision
            if not ref.is_file():
                return None
            commit = ref.read_text().strip()
        snapshot = folder / "snapshots" / commit
        if name in self.paths:
            candidates = [snapshot / self.paths[name]]
        elif snapshot.is_dir():
            candidates = sorted(snapshot.rglob(_glob_literal(name)), key=lambda p: (len(p.parts), str(p)))
        else:
            candidates = []
        return next((path for path in candidates if path.is_file()), None)

    def fetch(self, name: str, target: Path, progress: DownloadProgress | None, force: bool) -> Fetched:
        path_in_repo, listed = self._locate(name)
        try:
            cached = hf_hub_download(
                self.repo_id,
                path_in_repo,
                repo_type=self.repo_type,
                revision=self.revision,
                cache_dir=hub_cache_dir(),
                endpoint=hub_endpoint(),
                force_download=force,
                etag_timeout=READ_TIMEOUT,
                tqdm_class=_progress_bar_class(name, progress),
            )
        except RemoteEntryNotFoundError:
            raise SourceUnavailable(f"{self.label} answered 404 (EntryNotFound) for {path_in_repo}") from None
        except (HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled) as error:
            raise SourceUnavailable(f"{self.label} could not provide {path_in_repo} ({_describe(error)})") from error
        except (httpx2.HTTPError, OSError) as error:
            # huggingface_hub has already resumed a dropped transfer several times before giving up.
            raise TransferFailed(
                f"the download of {path_in_repo} from {self.label} failed ({_describe(error)})"
            ) from error
        place_file(Path(cached), target)
        return Fetched(
            origin=f"{self.label}, {path_in_repo}",
            size=listed.size if listed is not None else None,
            sha256=listed.lfs.sha256 if listed is not None and listed.lfs is not None else None,
        )

    def _locate(self, name: str) -> tuple[str, RepoFile | None]:
        listing = self._listing_once()
        if name in self.paths:
            # A configured path is asked for even if the list misses it: the Hub's answer then says why.
            return self.paths[name], listing.get(self.paths[name])
        matches = sorted(
            (file for file in listing.values() if PurePosixPath(file.path).name == name),
            key=lambda file: (file.path.count("/"), file.path),
        )
        if not matches:
            raise SourceUnavailable(f"{self.label} holds no file named {name}")
        return matches[0].path, matches[0]

    def _listing_once(self) -> dict[str, RepoFile]:
        with self._lock:
            if self._listing is not None:
                return self._listing
            self._failures.check(hub_endpoint())
            try:
                self._listing = self._list_files()
            except SourceUnavailable as error:
                self._failures.record(hub_endpoint(), str(error))
                raise
            return self._listing

    def _list_files(self) -> dict[str, RepoFile]:
        endpoint = hub_endpoint()
        url: str | None = f"{endpoint}/api/{self.repo_type}s/{self.repo_id}/tree/{quote(self.revision, safe='')}"
        params: dict[str, str] | None = {"recursive": "true", "expand": "false"}
        files: dict[str, RepoFile] = {}
        try:
            while url is not None:
                response = get_session().get(
                    url,
                    params=params,
                    headers=build_hf_headers(),
                    timeout=httpx2.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT),
                )
                hf_raise_for_status(response)
                files.update(_parse_tree_page(response))
                url, params = response.links.get("next", {}).get("url"), None
        except (httpx2.TimeoutException, httpx2.NetworkError, OfflineModeIsEnabled) as error:
            raise SourceUnavailable(
                f"the Hugging Face Hub at {endpoint} could not be reached ({_describe(error)})"
            ) from None
        except RepositoryNotFoundError:
            raise SourceUnavailable(
                f"the Hub at {endpoint} has no public {self.repo_type} repo {self.repo_id}"
            ) from None
        except RevisionNotFoundError:
            raise SourceUnavailable(f"{self.repo_id} on {endpoint} has no revision {self.revision}") from None
        except HfHubHTTPError as error:
            raise SourceUnavailable(
                f"the Hub at {endpoint} answered HTTP {error.response.status_code} for the file list of {self.spec}"
            ) from None
        return files


def _parse_tree_page(response: httpx2.Response) -> dict[str, RepoFile]:
    try:
        entries = [RepoFile(**entry) for entry in response.json() if entry.get("type") == "file"]
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise SourceUnavailable(
            f"{response.url} did not answer like a Hugging Face Hub file list ({_describe(error)})"
        ) from None
    return {file.path: file for file in entries}


def _glob_literal(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


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
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
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
                raise TransferFailed(f"the download from {url} broke off ({_describe(error)})") from None
            reason = f"{host} could not be reached ({_describe(error)})"
            self._failures.record(host, reason)
            raise SourceUnavailable(reason) from None
        finally:
            temporary.unlink(missing_ok=True)
        return Fetched(origin=url, size=total, sha256=None)
