"""What an archive job did: the JSON summary printed at its end (and written to --json)."""

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class JobSummary:
    """done: inputs written by this job; skipped: inputs whose output was already complete; failed: one
    "input: reason" line each; no_face: photos written only upscaled, as no face was found in them; faces: faces
    restored in all (video frames included); frames: video frames written; leftovers_removed: temporary files of
    an earlier, killed job deleted from the output folder; seconds: the job's wall time."""

    task: str
    output: str
    actors: int = 0
    done: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    no_face: list[str] = field(default_factory=list)
    faces: int = 0
    frames: int = 0
    leftovers_removed: int = 0
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        """The running counts a progress bar shows."""
        return {"done": self.done, "failed": len(self.failed)}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 2)
        return data
