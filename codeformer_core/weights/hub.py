"""Pretrained files from a Hugging Face Hub repo, found by name wherever a mirror keeps them.

Why the file list is fetched here rather than with `HfApi.list_repo_files`: that call retries a dead connection
with back-off, and `hf_hub_download` retries a failed HEAD with a long timeout when nothing is cached, so an
offline start would wait a long time (bench/README.md, "Measurements behind the engine's constants"). One GET with
`CONNECT_TIMEOUT` tells quickly whether the Hub answers at all; only then is `hf_hub_download` asked for the file.
"""

import re
from pathlib import Path, PurePosixPath
from threading import Lock
from urllib.parse import quote

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

from ..errors import InvalidOptionError
from .hub_settings import HubSettings
from .sources import (
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    DownloadProgress,
    Fetched,
    RecentFailures,
    SourceUnavailable,
    TransferFailed,
    describe,
    place_file,
)

_COMMIT_HASH = re.compile(r"[0-9a-f]{40}")
_REPO_TYPE_PREFIXES = {"models/": "model", "datasets/": "dataset", "spaces/": "space"}


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


class HubRepo:
    """One repo on a Hugging Face Hub, where files are found by name wherever the mirror keeps them.

    settings: the repo ("owner/name" for a model repo, "spaces/owner/name" or "datasets/owner/name"), its
      revision, the Hub's endpoint and huggingface_hub's cache directory.
    paths: file name -> path in the repo, for mirrors that rename files or hold two copies.
    Downloads go to huggingface_hub's cache and are then linked into the target path.
    """

    def __init__(self, settings: HubSettings, paths: dict[str, str]) -> None:
        self.spec = settings.repo
        self.repo_id, self.repo_type = parse_repo(settings.repo)
        self.revision = settings.revision
        self.endpoint = settings.endpoint
        self.cache_dir = settings.cache_dir
        self.paths = dict(paths)
        self._lock = Lock()
        self._listing: dict[str, RepoFile] | None = None
        self._failures = RecentFailures()

    @property
    def label(self) -> str:
        return f"Hub repo {self.spec}@{self.revision} at {self.endpoint}"

    def cached(self, name: str) -> Path | None:
        """The file in huggingface_hub's cache for this repo and revision, found without any network."""
        folder = self.cache_dir / repo_folder_name(repo_id=self.repo_id, repo_type=self.repo_type)
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
                cache_dir=self.cache_dir,
                endpoint=self.endpoint,
                force_download=force,
                etag_timeout=READ_TIMEOUT,
                tqdm_class=_progress_bar_class(name, progress),
            )
        except RemoteEntryNotFoundError:
            raise SourceUnavailable(f"{self.label} answered 404 (EntryNotFound) for {path_in_repo}") from None
        except (HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled) as error:
            raise SourceUnavailable(f"{self.label} could not provide {path_in_repo} ({describe(error)})") from error
        except (httpx2.HTTPError, OSError) as error:
            # huggingface_hub has already resumed a dropped transfer several times before giving up.
            raise TransferFailed(
                f"the download of {path_in_repo} from {self.label} failed ({describe(error)})"
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
            self._failures.check(self.endpoint)
            try:
                self._listing = self._list_files()
            except SourceUnavailable as error:
                self._failures.record(self.endpoint, str(error))
                raise
            return self._listing

    def _list_files(self) -> dict[str, RepoFile]:
        endpoint = self.endpoint
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
                f"the Hugging Face Hub at {endpoint} could not be reached ({describe(error)})"
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
            f"{response.url} did not answer like a Hugging Face Hub file list ({describe(error)})"
        ) from None
    return {file.path: file for file in entries}


def _glob_literal(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


