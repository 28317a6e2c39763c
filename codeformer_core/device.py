"""Which torch device the engine runs on."""

import torch

from .errors import DeviceError


def resolve_device(requested: str | None = None) -> torch.device:
    """None or "auto": CUDA when present, else CPU. An explicit device that is not available is refused."""
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as error:
        raise DeviceError(f"Unknown device {requested!r}; use 'auto', 'cpu' or 'cuda[:N]'.") from error
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise DeviceError(f"Device {requested!r} was requested but this machine has no CUDA GPU; use --device cpu.")
        if device.index is not None and device.index >= count:
            raise DeviceError(f"Device {requested!r} does not exist: this machine has {count} CUDA GPU(s).")
    elif device.type != "cpu":
        raise DeviceError(f"Device {requested!r} is not supported; use 'auto', 'cpu' or 'cuda[:N]'.")
    return device

