"""The one way the app gets a pretrained file: `WeightStore.path(name)` or `WeightStore.load(name, loader)`.

Resolution order, per file, once per process:
1. the weights directory: a file there is used with no network at all;
2. huggingface_hub's cache, also without network (the file is then linked into the weights directory);
3. the Hugging Face Hub (`HubSettings`: endpoint, repo and revision), where the file is found by name in the
   repo's file list, since mirrors keep the files at different paths;
4. the official release URL (unless `allow_url_fallback=False`).
Offline (`HubSettings.offline`, from HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE) only 1 and 2 are tried.
`Settings.weight_store` takes all of it from the process's settings.

Where files end up: huggingface_hub downloads into its own cache, and the store then hard-links the file into the
weights directory (a copy only when the two are on different filesystems). So the weights directory always holds
every file the app has used, which is what makes the app work offline later, even if the Hub cache is cleared,
and no 350 MB file is stored twice.

Verification: a downloaded file must have the official size and SHA-256 when the registry knows them, else the
size and SHA-256 the Hub lists for it; a file with no known digest must load as a plain tensor checkpoint. A file
that fails is reported by name and fetched once more. A file already in the weights directory is used as it is
(an unofficial size is only logged: it may be the user's own checkpoint); the model loader reads it anyway, and
`load()` turns a `CorruptWeightsError` from the loader into one more fetch, so a damaged file never crashes the
app later.
"""

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import TypeVar

from ..errors import CorruptWeightsError, WeightsError, WeightsUnavailableError
from .hub_settings import HubSettings
from .checkpoints import size_problem, verify_download
from .hub import HubRepo
from .registry import REGISTRY, WeightFile, weight_file
from .release import ReleaseUrls
from .sources import DownloadProgress, Fetched, SourceUnavailable, TransferFailed, place_file


logger = logging.getLogger(__name__)

DEFAULT_WEIGHTS_DIR = Path("weights")
T = TypeVar("T")
FileIdentity = tuple[int, int, int]
Fetch = Callable[[Path, DownloadProgress | None, bool], Fetched]
"""A source: (target path, progress, force a fresh transfer) -> what the source says it delivered."""


class WeightStore:
    """Finds, downloads, verifies and hands out the pretrained files; safe to share between threads.

    weights_dir: where files are looked up and placed.
    hub: which Hub, repo and revision to download from, huggingface_hub's cache, and whether to stay offline.
    hub_paths: file name -> path in the repo, for a mirror that renames a file; others are found by name.
    registry: the files' official facts (default: REGISTRY); tests pass their own sizes and digests.
    """

    def __init__(
        self,
        weights_dir: Path | str = DEFAULT_WEIGHTS_DIR,
        *,
        hub: HubSettings | None = None,
        hub_paths: Mapping[str, str] | None = None,
        allow_url_fallback: bool = True,
        registry: Mapping[str, WeightFile] | None = None,
    ) -> None:
        self.weights_dir = Path(weights_dir).expanduser().absolute()
        self.hub_settings = hub if hub is not None else HubSettings()
        self.hub = HubRepo(self.hub_settings, dict(hub_paths or {}))
        self.allow_url_fallback = allow_url_fallback
        self.releases = ReleaseUrls()
        self.registry = dict(registry if registry is not None else REGISTRY)
        self._guard = threading.Lock()
        self._file_locks: dict[str, threading.Lock] = {}
        self._resolved: dict[str, Path] = {}
        self._origins: dict[str, str] = {}
        self._downloaded: dict[str, FileIdentity | None] = {}  # name -> the file as this process fetched it

    def path(self, name: str, progress: DownloadProgress | None = None) -> Path:
        """The local path of `name`, fetched and verified first if needed (once per process and store)."""
        entry = weight_file(name, self.registry)
        with self._lock_for(name):
            known = self._resolved.get(name)
            if known is not None and known.is_file():
                return known
            path = self._resolve(entry, progress)
            self._resolved[name] = path
            return path

    def load(self, name: str, loader: Callable[[Path], T], progress: DownloadProgress | None = None) -> T:
        """`loader(path)` for the file `name`; if the loader finds the file corrupt (CorruptWeightsError), the file
        is deleted, fetched once more and loaded again. Other errors (e.g. CheckpointMismatchError) pass through."""
        path = self.path(name, progress)
        identity = _identity(path)
        try:
            return loader(path)
        except CorruptWeightsError as error:
            path = self._replace_corrupt(weight_file(name, self.registry), identity, error, progress)
        return loader(path)

    def missing_files(self, names: Iterable[str]) -> list[str]:
        """Those of `names` that would have to be downloaded (nothing usable in the weights directory or the
        Hugging Face cache); touches no network."""
        return [name for name in names if self._local(weight_file(name, self.registry)) is None]

    def origin(self, name: str) -> str | None:
        """Where this store got `name` from in this process, or None if it has not been resolved."""
        return self._origins.get(name)

    def _lock_for(self, name: str) -> threading.Lock:
        with self._guard:
            return self._file_locks.setdefault(name, threading.Lock())

    def _resolve(self, entry: WeightFile, progress: DownloadProgress | None) -> Path:
        target = self.weights_dir / entry.name
        if target.is_file() and target.stat().st_size > 0:
            # A file the user put here is theirs: a size unlike the official one may be a fine-tuned or re-saved
            # checkpoint, so it is used; if it does not load, load() fetches a fresh copy.
            problem = size_problem(target, entry)
            if problem is not None:
                logger.warning("%s %s; using it as it is", target, problem)
            self._origins[entry.name] = "already in the weights directory"
            return target
        cached = self.hub.cached(entry.name)
        if cached is not None and size_problem(cached, entry) is None:
            place_file(cached, target)
            self._origins[entry.name] = f"Hugging Face cache, {cached}"
            return target
        return self._download(entry, progress, force=False)

    def _local(self, entry: WeightFile) -> Path | None:
        own = self.weights_dir / entry.name
        if own.is_file() and own.stat().st_size > 0:
            return own
        cached = self.hub.cached(entry.name)
        return cached if cached is not None and size_problem(cached, entry) is None else None

    def _download(self, entry: WeightFile, progress: DownloadProgress | None, *, force: bool) -> Path:
        """Fetch from the Hub, else from the release URL; raises naming every problem met on the way."""
        if self.hub_settings.offline:
            raise WeightsUnavailableError(
                self._failure_message(entry, ["HF_HUB_OFFLINE is set, so nothing is downloaded"], offline=True)
            )
        target = self.weights_dir / entry.name
        problems: list[WeightsError] = []
        sources = self._sources(entry)
        for index, fetch in enumerate(sources):
            fetched = _fetch_verified(fetch, entry, target, progress, force, problems)
            if fetched is not None:
                self._downloaded[entry.name] = _identity(target)
                self._origins[entry.name] = fetched.origin
                return target
            if index + 1 < len(sources):
                logger.warning("%s: %s; trying the official release URL", entry.name, problems[-1])
        corrupt = any(isinstance(problem, CorruptWeightsError) for problem in problems)
        error_type = CorruptWeightsError if corrupt else WeightsUnavailableError
        raise error_type(self._failure_message(entry, [str(problem) for problem in problems], offline=False))

    def _sources(self, entry: WeightFile) -> list[Fetch]:
        sources: list[Fetch] = [partial(self.hub.fetch, entry.name)]
        if self.allow_url_fallback and entry.url:
            release = partial(self.releases.fetch, entry.name, entry.url)
            sources.append(lambda target, progress, _force: release(target, progress))
        return sources

    def _replace_corrupt(
        self,
        entry: WeightFile,
        identity: FileIdentity | None,
        error: CorruptWeightsError,
        progress: DownloadProgress | None,
    ) -> Path:
        target = self.weights_dir / entry.name
        with self._lock_for(entry.name):
            if target.is_file() and _identity(target) != identity:
                return target  # another thread has already replaced it
            if entry.name in self._downloaded and self._downloaded[entry.name] == identity:
                # Fetched and verified in this process and untouched since, yet the loader refuses it: fetching
                # again won't help. (A file changed since, e.g. damaged on disk, is fetched again.)
                raise error
            logger.warning("%s (%s); deleting it and fetching it again", error, entry.purpose)
            target.unlink(missing_ok=True)
            self._resolved.pop(entry.name, None)
            path = self._download(entry, progress, force=True)
            self._resolved[entry.name] = path
            return path

    def _failure_message(self, entry: WeightFile, problems: list[str], *, offline: bool) -> str:
        where = "; ".join(dict.fromkeys(problems)) or "no source was configured"
        network_fix = (
            "or unset HF_HUB_OFFLINE to let it be downloaded"
            if offline
            else f"or set HF_ENDPOINT to a reachable Hugging Face Hub mirror (now {self.hub_settings.endpoint})"
        )
        return (
            f"{entry.name} ({entry.purpose}) is not in {self.weights_dir} and could not be fetched: {where}. "
            f"Fix: put {entry.name} into {self.weights_dir} (official copy: {entry.url}), {network_fix}."
        )


def _fetch_verified(
    fetch: Fetch,
    entry: WeightFile,
    target: Path,
    progress: DownloadProgress | None,
    force: bool,
    problems: list[WeightsError],
) -> Fetched | None:
    """One source, tried twice when a transfer breaks off or its file fails verification; the problems met are
    appended to `problems`, and None returned if the source gave no good file."""
    for attempt in range(2):
        try:
            fetched = fetch(target, progress, force or attempt > 0)
        except TransferFailed as error:
            problems.append(error)
            continue
        except SourceUnavailable as error:
            problems.append(error)
            return None
        try:
            verify_download(target, entry, fetched)
        except CorruptWeightsError as error:
            target.unlink(missing_ok=True)
            problems.append(error)
            logger.warning("%s%s", error, "; fetching it again" if attempt == 0 else "")
            continue
        return fetched
    return None


def _identity(path: Path) -> FileIdentity | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size
