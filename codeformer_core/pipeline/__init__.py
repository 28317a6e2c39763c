"""The shared pipeline and what it keeps between runs: `Pipeline.run` takes an image through numbered stages
(working image, faces prepared, faces restored, faces pasted back), each in a module of its own here or in
`faces/` and `network/`."""

from .clock import Progress
from .pipeline import DEFAULT_MAX_FACES, SWEEP_FIDELITIES, ImageRestorer, Pipeline
from .request import RestoreRequest

__all__ = ["DEFAULT_MAX_FACES", "SWEEP_FIDELITIES", "ImageRestorer", "Pipeline", "Progress", "RestoreRequest"]
