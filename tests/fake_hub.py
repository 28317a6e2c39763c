"""A Hugging Face Hub on 127.0.0.1 for tests: enough of the Hub's HTTP protocol for `huggingface_hub` and our
file list, so tests exercise the real download path with no internet.

It serves one repo:
- HEAD/GET `/{repo}/resolve/{revision}/{path}` (`/spaces/...`, `/datasets/...` for those repo types) with
  `X-Repo-Commit`, `ETag` (the file's SHA-256, as the Hub gives for LFS files) and `Content-Length`; GET honours
  `Range: bytes=N-`, as huggingface_hub resumes a broken transfer with one;
- 404 with `X-Error-Code: EntryNotFound` / `RevisionNotFound` / `RepoNotFound`;
- GET `/api/{type}s/{repo}/tree/{revision}?recursive=true`: the file list with sizes and LFS SHA-256;
- GET `/releases/{name}` from `release_files`, standing in for the official release URLs.
Responses close the connection (HTTP/1.0), so once `stop()` returns nothing answers any more.

Tests break it on purpose with `serve_instead` (other bytes than listed: a corrupt or truncated mirror) and
`cut_next` (promise the whole body, send half, hang up).
"""

import hashlib
import io
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import pytest
import torch

Content = bytes | Path
COMMIT = "0123456789abcdef0123456789abcdef01234567"
_STREAM_CHUNK = 1 << 20
_URL_PREFIX = {"model": "", "space": "spaces/", "dataset": "datasets/"}


@dataclass
class Request:
    method: str
    path: str
    range: str | None


@dataclass
class FakeHub:
    """One running fake Hub. `files` maps paths in the repo to their content (bytes, or a Path streamed from disk)
    and may be changed while it runs; `requests` records every request."""

    repo_id: str = "test-org/codeformer-weights"
    repo_type: str = "model"
    revision: str = "main"
    files: dict[str, Content] = field(default_factory=dict)
    release_files: dict[str, Content] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    url: str = ""
    _substitutes: dict[str, list] = field(default_factory=dict)
    _cuts: dict[str, int] = field(default_factory=dict)
    _digests: dict[tuple[str, int], str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @classmethod
    def start(cls, **kwargs) -> "FakeHub":
        hub = cls(**kwargs)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.hub = hub  # type: ignore[attr-defined]
        hub._server = server
        hub.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, args=(0.05,), name="fake-hub", daemon=True).start()
        return hub

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def repo_spec(self) -> str:
        """The repo as `CODEFORMER_HUB_REPO` names it ("owner/name", "spaces/owner/name", ...)."""
        return _URL_PREFIX[self.repo_type] + self.repo_id

    def release_url(self, name: str) -> str:
        return f"{self.url}/releases/{name}"

    def serve_instead(self, path: str, content: bytes, times: int | None = None) -> None:
        """Send `content` for `path` (the next `times` GETs, or always) while the file list and ETag still
        describe the listed file."""
        self._substitutes[path] = [content, times]

    def cut_next(self, path: str, times: int = 1) -> None:
        """For the next `times` GETs of `path`: announce the full Content-Length, send half of it, hang up."""
        self._cuts[path] = times

    def gets(self, path: str) -> list[Request]:
        """The GET requests made for `path` in the repo."""
        suffix = f"/resolve/{self.revision}/{path}"
        return [r for r in self.requests if r.method == "GET" and r.path.endswith(suffix)]

    def digest(self, content: Content) -> str:
        """SHA-256 of `content` (the Hub's ETag and LFS oid); a file's is computed once per modification."""
        if isinstance(content, bytes):
            return hashlib.sha256(content).hexdigest()
        key = (str(content), content.stat().st_mtime_ns)
        with self._lock:
            if key not in self._digests:
                self._digests[key] = _sha256(content)
            return self._digests[key]

    def _served(self, path: str, consume: bool) -> Content:
        with self._lock:
            substitute = self._substitutes.get(path)
            if substitute is None:
                return self.files[path]
            content, times = substitute
            if consume and times is not None:
                substitute[1] -= 1
                if substitute[1] <= 0:
                    del self._substitutes[path]
            return content

    def _take_cut(self, path: str) -> bool:
        with self._lock:
            remaining = self._cuts.get(path, 0)
            if remaining:
                self._cuts[path] = remaining - 1
            return remaining > 0

    def tree(self) -> list[dict]:
        entries, folders = [], set()
        for path, content in sorted(self.files.items()):
            folders.update(str(parent) for parent in PurePosixPath(path).parents if str(parent) != ".")
            size, sha256 = _size(content), self.digest(content)
            entries.append(
                {
                    "type": "file",
                    "oid": hashlib.sha1(sha256.encode()).hexdigest(),
                    "size": size,
                    "path": path,
                    "lfs": {"oid": sha256, "size": size, "pointerSize": 134},
                }
            )
        directories = [{"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in sorted(folders)]
        return directories + entries


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        hub: FakeHub = self.server.hub  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        hub.requests.append(Request(self.command, path, self.headers.get("Range")))
        tree = f"/api/{hub.repo_type}s/{hub.repo_id}/tree/"
        resolve = f"/{_URL_PREFIX[hub.repo_type]}{hub.repo_id}/resolve/"
        try:
            if path.startswith(tree):
                self._tree(hub, path[len(tree) :])
            elif path.startswith(resolve):
                revision, _, file_path = path[len(resolve) :].partition("/")
                self._resolve(hub, revision, file_path)
            elif path.startswith("/releases/") and path[len("/releases/") :] in hub.release_files:
                self._send(hub.release_files[path[len("/releases/") :]], {})
            else:
                self._error(404, "RepoNotFound" if "/resolve/" in path or path.startswith("/api/") else None)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _tree(self, hub: FakeHub, revision: str) -> None:
        if revision not in (hub.revision, COMMIT):
            self._error(404, "RevisionNotFound")
            return
        self._send(json.dumps(hub.tree()).encode(), {"Content-Type": "application/json"})

    def _resolve(self, hub: FakeHub, revision: str, file_path: str) -> None:
        if revision not in (hub.revision, COMMIT):
            self._error(404, "RevisionNotFound")
            return
        if file_path not in hub.files:
            self._error(404, "EntryNotFound", {"X-Repo-Commit": COMMIT})
            return
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{hub.digest(hub.files[file_path])}"', "Accept-Ranges": "bytes"}
        content = hub._served(file_path, consume=self.command == "GET")
        cut = self.command == "GET" and hub._take_cut(file_path)
        self._send(content, headers, cut=cut)

    def _send(self, content: Content, headers: dict[str, str], *, cut: bool = False) -> None:
        total = _size(content)
        start = _range_start(self.headers.get("Range"), total) if self.command == "GET" else 0
        self.send_response(206 if start else 200)
        for name, value in headers.items():
            self.send_header(name, value)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
        self.send_header("Content-Length", str(total - start))
        self.end_headers()
        if self.command == "GET":
            end = start + (total - start) // 2 if cut else total
            for chunk in _chunks(content, start, end):
                self.wfile.write(chunk)

    def _error(self, status: int, code: str | None, headers: dict[str, str] | None = None) -> None:
        body = json.dumps({"error": code or "not found"}).encode()
        self.send_response(status)
        for name, value in {**(headers or {}), **({"X-Error-Code": code} if code else {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)


def _range_start(header: str | None, total: int) -> int:
    if not header or not header.startswith("bytes=") or not header.endswith("-"):
        return 0
    start = int(header[len("bytes=") : -1])
    return start if 0 < start < total else 0


def _size(content: Content) -> int:
    return content.stat().st_size if isinstance(content, Path) else len(content)


def _chunks(content: Content, start: int, end: int) -> Iterator[bytes]:
    if isinstance(content, bytes):
        yield content[start:end]
        return
    with content.open("rb") as stream:
        stream.seek(start)
        while start < end:
            chunk = stream.read(min(_STREAM_CHUNK, end - start))
            if not chunk:
                return
            start += len(chunk)
            yield chunk


def _sha256(content: Content) -> str:
    digest = hashlib.sha256()
    for chunk in _chunks(content, 0, _size(content)):
        digest.update(chunk)
    return digest.hexdigest()


def closed_port_url() -> str:
    """An http://127.0.0.1 URL where nothing listens: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextmanager
def silent_server_url() -> Iterator[str]:
    """An http://127.0.0.1 URL that accepts connections and never answers: clients wait for their timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def small_checkpoint(seed: int, numel: int = 1024, *, wrapper: str | None = "params") -> bytes:
    """A small plain-tensor checkpoint laid out like the official facexlib / Real-ESRGAN files
    (`{"params": state_dict}`, or a bare state_dict when `wrapper` is None)."""
    generator = torch.Generator().manual_seed(seed)
    state_dict = {"conv.weight": torch.rand(numel, generator=generator), "conv.bias": torch.zeros(4)}
    buffer = io.BytesIO()
    torch.save({wrapper: state_dict} if wrapper else state_dict, buffer)
    return buffer.getvalue()


def use_hub(monkeypatch: pytest.MonkeyPatch, hub: FakeHub, hf_home: Path) -> None:
    """Point huggingface_hub and the weight store at `hub`, with a fresh Hugging Face cache in `hf_home`."""
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("CODEFORMER_HUB_REPO", hub.repo_spec)
    for name in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "CODEFORMER_HUB_REVISION"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    """A running fake Hub with an empty model repo; HF_ENDPOINT, HF_HOME (a temporary one) and
    CODEFORMER_HUB_REPO point at it for the test."""
    hub = FakeHub.start()
    use_hub(monkeypatch, hub, tmp_path / "hf-home")
    yield hub
    hub.stop()
    # Downloads can be hundreds of MB: keep them out of the temp dirs pytest retains after the session.
    for child in tmp_path.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()
