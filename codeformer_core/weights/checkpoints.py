"""Reading pretrained files safely, loading them into a network, and checking downloaded files.

Files are read with `torch.load(..., weights_only=True)`: a pickle that would run code is refused, never executed.
"""

import hashlib
import pickle
import re
import textwrap
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor

from ..errors import CheckpointMismatchError, CorruptWeightsError, WeightsUnavailableError
from .registry import WeightFile
from .sources import Fetched

# Where the official CodeFormer, facexlib and Real-ESRGAN files keep their state_dict, in order of preference.
WRAPPER_KEYS = ("params_ema", "params")
# Errors torch.load raises on bytes that are not a (complete) checkpoint; a truncated zip gives a bare OSError.
_UNREADABLE = (RuntimeError, EOFError, KeyError, IndexError, ValueError, OSError, pickle.UnpicklingError)
# Phrases of the weights-only unpickler when it meets a class or function it will not import.
_REFUSED_CODE = re.compile(r"GLOBAL|allowlisted|must be imported")
_LISTED_KEYS = 5
_HASH_CHUNK_BYTES = 1 << 22


def read_state_dict(path: str | Path, *, key: str | None = None) -> dict[str, Tensor]:
    """The tensors stored in the checkpoint at `path`, on the CPU.

    key: the entry of the top-level dict that holds the state_dict. When None, `params_ema` or else `params`
    is used if present (the official CodeFormer, facexlib and Real-ESRGAN layouts), otherwise the top level.
    Raises WeightsUnavailableError if the file does not exist and CorruptWeightsError if it cannot be read,
    holds code rather than just tensors, or holds no state_dict.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"weights file {path} does not exist; download it again")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if _REFUSED_CODE.search(str(exc)):
            raise CorruptWeightsError(
                f"loading {path} was refused: this file contains code, not just tensors. "
                "Delete it and download the official file again."
            ) from exc
        raise _corrupt(path, exc) from exc
    except _UNREADABLE as exc:
        raise _corrupt(path, exc) from exc
    return _unwrap_state_dict(path, loaded, key)


def load_weights_into(network: torch.nn.Module, state_dict: dict[str, Tensor], path: str | Path, what: str,
                      official_name: str) -> torch.nn.Module:
    """`network` (built on the meta device, so nothing was initialised for nothing) holding `state_dict`, strictly.

    Raises CheckpointMismatchError naming the file, the network it was meant for and the official file it needs.
    """
    try:
        network.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as error:
        raise CheckpointMismatchError(
            f"{path} does not fit the {what} ({textwrap.shorten(str(error), 300)}). "
            f"It needs the official {official_name}."
        ) from error
    return network


def _unwrap_state_dict(path: Path, loaded: object, key: str | None) -> dict[str, Tensor]:
    if not isinstance(loaded, dict):
        raise CorruptWeightsError(f"{path} holds a {type(loaded).__name__}, not a dict of tensors; download it again")
    if key is None:
        key = next((k for k in WRAPPER_KEYS if k in loaded), None)
    if key is not None:
        if key not in loaded:
            raise CorruptWeightsError(
                f"{path} has no entry {key!r} (top-level keys: {first_names(loaded)}); download the right file"
            )
        loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise CorruptWeightsError(
            f"{path} does not hold a state_dict of tensors"
            + (f" under {key!r}" if key else f" (top-level keys: {first_names(loaded)})")
        )
    return loaded


def _corrupt(path: Path, exc: BaseException) -> CorruptWeightsError:
    return CorruptWeightsError(
        f"weights file {path} is truncated or corrupt ({type(exc).__name__}); delete it and download it again"
    )


def first_names(names: Iterable[object]) -> str:
    names = list(names)
    shown = ", ".join(map(str, names[:_LISTED_KEYS]))
    return shown + (f" and {len(names) - _LISTED_KEYS} more" if len(names) > _LISTED_KEYS else "")


def size_problem(path: Path, entry: WeightFile) -> str | None:
    size = path.stat().st_size
    if size == 0:
        return "is empty"
    if entry.size is not None and size != entry.size:
        return f"has {size} bytes, the official file {entry.size} (truncated or a different file)"
    return None


def verify_download(path: Path, entry: WeightFile, fetched: Fetched) -> None:
    """Size, then SHA-256 when known, else a safe load: raises CorruptWeightsError naming the file and source."""
    size = path.stat().st_size
    expected_size = entry.size if entry.size is not None else fetched.size
    if expected_size is not None and size != expected_size:
        raise CorruptWeightsError(
            f"{entry.name} from {fetched.origin} has {size} bytes, expected {expected_size} "
            "(truncated or a different file)"
        )
    expected_sha256 = entry.sha256 or fetched.sha256
    if expected_sha256 is None:
        read_state_dict(path)
        return
    actual = _sha256(path)
    if actual != expected_sha256.lower():
        raise CorruptWeightsError(
            f"{entry.name} from {fetched.origin} has SHA-256 {actual}, expected {expected_sha256} "
            "(corrupt or a different file)"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
