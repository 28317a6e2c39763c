"""Where the weight store looks for pretrained files on a Hugging Face Hub, read from the environment by `Settings`."""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..checks import is_true

DEFAULT_HUB_REPO = "spaces/sczhou/CodeFormer"
"""The CodeFormer author's Space: download scripts of several projects fetch codeformer.pth from it. Files are
found by name, so its folder layout does not matter; a file it lacks comes from the official release URL."""
DEFAULT_HUB_REVISION = "main"
DEFAULT_HUB_ENDPOINT = "https://huggingface.co"


def hub_cache_dir(environ: Mapping[str, str]) -> Path:
    """huggingface_hub's cache directory, resolved the way it resolves it: HF_HUB_CACHE, else $HF_HOME/hub."""
    if environ.get("HF_HUB_CACHE"):
        return Path(environ["HF_HUB_CACHE"]).expanduser()
    xdg_cache = environ.get("XDG_CACHE_HOME") or "~/.cache"
    home = environ.get("HF_HOME") or os.path.join(xdg_cache, "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


@dataclass(frozen=True)
class HubSettings:
    """Where pretrained files are looked for on a Hugging Face Hub.

    repo: "owner/name" of a model repo, or "spaces/owner/name" / "datasets/owner/name".
    revision: branch, tag or commit.
    endpoint: the Hub's base URL (a mirror's, for one).
    cache_dir: huggingface_hub's cache, looked into before any download.
    offline: nothing is downloaded; only the weights directory and the cache are used.
    """

    repo: str = DEFAULT_HUB_REPO
    revision: str = DEFAULT_HUB_REVISION
    endpoint: str = DEFAULT_HUB_ENDPOINT
    cache_dir: Path = field(default_factory=lambda: hub_cache_dir({}))
    offline: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "HubSettings":
        """CODEFORMER_HUB_REPO, CODEFORMER_HUB_REVISION and huggingface_hub's own HF_ENDPOINT, HF_HOME,
        HF_HUB_CACHE and HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE, which huggingface_hub also honours)."""
        offline = environ.get("HF_HUB_OFFLINE") or environ.get("TRANSFORMERS_OFFLINE") or ""
        return cls(
            repo=environ.get("CODEFORMER_HUB_REPO") or DEFAULT_HUB_REPO,
            revision=environ.get("CODEFORMER_HUB_REVISION") or DEFAULT_HUB_REVISION,
            endpoint=(environ.get("HF_ENDPOINT") or DEFAULT_HUB_ENDPOINT).rstrip("/"),
            cache_dir=hub_cache_dir(environ),
            offline=is_true(offline),
        )
