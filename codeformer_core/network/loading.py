"""A CodeFormer checkpoint into the network for its task, with a message that says which file it really is."""

from pathlib import Path

import torch

from ..errors import CheckpointMismatchError
from ..layouts import Task
from ..weights.checkpoints import first_names, read_state_dict
from ..weights.registry import CODEFORMER_FILES
from .codeformer import CONFIGS, CodeFormer, network_skeleton


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
    details = "; ".join(f"{label}: {first_names(names)}" for label, names in problems if names)
    return (
        f"{path} does not fit the {task} network ({verdict}). {details}. "
        f"The {task} task needs {CODEFORMER_FILES[task]}."
    )
