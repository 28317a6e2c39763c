"""Reading pretrained files safely, and loading a CodeFormer checkpoint into the network for its task.

Files are read with `torch.load(..., weights_only=True)`: a pickle that would run code is refused, never executed.
"""

import pickle
import re
import textwrap
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor

from .errors import CheckpointMismatchError, CorruptWeightsError, WeightsUnavailableError
from .layouts import Task
from .network import CONFIGS, CodeFormer
from .network.codeformer import network_skeleton
from .weights_registry import CODEFORMER_FILES

# Where the official CodeFormer, facexlib and Real-ESRGAN files keep their state_dict, in order of preference.
WRAPPER_KEYS = ("params_ema", "params")
# Errors torch.load raises on bytes that are not a (complete) checkpoint; a truncated zip gives a bare OSError.
_UNREADABLE = (RuntimeError, EOFError, KeyError, IndexError, ValueError, OSError, pickle.UnpicklingError)
# Phrases of the weights-only unpickler when it meets a class or function it will not import.
_REFUSED_CODE = re.compile(r"GLOBAL|allowlisted|must be imported")
_LISTED_KEYS = 5


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


def load_network(task: Task, path: str | Path, device: torch.device | str = "cpu") -> CodeFormer:
    """The CodeFormer network for `task` with the weights in `path` (strict: every key and shape must match),
    in eval mode on `device`.

    Raises CheckpointMismatchError naming the file, the task and, when recognisable, the task the file is for.
    """
    net = network_skeleton(task)
    state_dict = read_state_dict(path)
    expected = {name: tuple(t.shape) for name, t in net.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in state_dict.items()}
    if found != expected:
        raise CheckpointMismatchError(_mismatch_message(Path(path), task, expected, found))
    # assign=True adopts the loaded tensors instead of copying them into freshly allocated ones; the
    # float32 conversion (a no-op for the published files) keeps the network float32 whatever the file holds.
    net.load_state_dict({name: t.float() for name, t in state_dict.items()}, strict=True, assign=True)
    return net.to(device)


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


def checkpoint_task(shapes: dict[str, tuple[int, ...]]) -> Task | None:
    """The task whose network has exactly these parameter names' codebook and CFT layout, if any."""
    codebook = shapes.get("quantize.embedding.weight")
    if codebook is None or "idx_pred_layer.1.weight" not in shapes:
        return None
    cft_resolutions = {int(name.split(".")[1]) for name in shapes if name.startswith("fuse_convs_dict.")}
    for task, config in CONFIGS.items():
        if codebook[0] == config.codebook_size and cft_resolutions == set(config.cft_resolutions):
            return task
    return None


def _unwrap_state_dict(path: Path, loaded: object, key: str | None) -> dict[str, Tensor]:
    if not isinstance(loaded, dict):
        raise CorruptWeightsError(f"{path} holds a {type(loaded).__name__}, not a dict of tensors; download it again")
    if key is None:
        key = next((k for k in WRAPPER_KEYS if k in loaded), None)
    if key is not None:
        if key not in loaded:
            raise CorruptWeightsError(
                f"{path} has no entry {key!r} (top-level keys: {_first(loaded)}); download the right file"
            )
        loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise CorruptWeightsError(
            f"{path} does not hold a state_dict of tensors"
            + (f" under {key!r}" if key else f" (top-level keys: {_first(loaded)})")
        )
    return loaded


def _corrupt(path: Path, exc: BaseException) -> CorruptWeightsError:
    return CorruptWeightsError(
        f"weights file {path} is truncated or corrupt ({type(exc).__name__}); delete it and download it again"
    )


def _mismatch_message(
    path: Path, task: Task, expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]]
) -> str:
    likely = checkpoint_task(found)
    if likely is None:
        verdict = "it does not look like any published CodeFormer checkpoint"
    elif likely == task:
        verdict = f"it looks like an altered {task} checkpoint"
    else:
        verdict = f"it looks like the {likely} checkpoint, {CODEFORMER_FILES[likely]}"
    missing = [name for name in expected if name not in found]
    unexpected = [name for name in found if name not in expected]
    reshaped = [
        f"{name} is {found[name]}, the network has {shape}"
        for name, shape in expected.items()
        if name in found and found[name] != shape
    ]
    problems = (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", reshaped))
    details = "; ".join(f"{label}: {_first(names)}" for label, names in problems if names)
    return (
        f"{path} does not fit the {task} network ({verdict}). {details}. "
        f"The {task} task needs {CODEFORMER_FILES[task]}."
    )


def _first(names: Iterable[object]) -> str:
    names = list(names)
    shown = ", ".join(map(str, names[:_LISTED_KEYS]))
    return shown + (f" and {len(names) - _LISTED_KEYS} more" if len(names) > _LISTED_KEYS else "")
