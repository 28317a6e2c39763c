"""Typed errors of the engine.

Every message is meant for the person using the app or the CLI: it names the value that was wrong, the limit
it broke and, where there is one, the fix. `demo/` shows them as `gr.Error`; the CLI prints them on one line.
"""


class CodeFormerError(Exception):
    """Base class: anything the engine refuses or cannot do, with a user-facing message."""


class InvalidOptionError(CodeFormerError, ValueError):
    """An option (task, fidelity, upscale, detector, ...) is outside its allowed range."""


class InvalidImageError(CodeFormerError):
    """The input is not an image we can read (wrong format, truncated, empty, unsupported layout)."""


class ImageTooLargeError(InvalidImageError):
    """The input has more pixels or bytes than the configured limit."""


class WeightsError(CodeFormerError):
    """Base class for problems with a pretrained file."""


class WeightsUnavailableError(WeightsError):
    """A needed file is not in the weights directory and could not be downloaded."""


class CorruptWeightsError(WeightsError):
    """A file exists but is truncated, corrupt, or not a plain tensor checkpoint."""


class CheckpointMismatchError(WeightsError):
    """A checkpoint loads but its keys or shapes do not fit the network it was meant for."""


class DeviceError(CodeFormerError):
    """The requested device is not available (e.g. `--device cuda` on a machine without a GPU)."""
