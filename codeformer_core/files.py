"""Files replaced in one step: written under a hidden name beside their target, then renamed over it.

A reader (another process, a job resumed after a kill) sees the old file or the complete new one, never a part;
the rename stays on one filesystem because the temporary name is in the target's folder.
"""

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def hidden_sibling(target: Path, ending: str) -> Path:
    """`.<target's name>.<ending>` in `target`'s folder: out of a plain listing, and on the target's filesystem."""
    return target.with_name(f".{target.name}.{ending}")


@contextmanager
def replaced_atomically(target: Path, temporary: Path) -> Iterator[Path]:
    """Yields `temporary` for the caller to fill; when the block ends without an error it replaces `target` in
    one rename. `temporary` is removed whatever happens, so a failure leaves `target` as it was and no part."""
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomically(target: Path, data: bytes, temporary: Path) -> None:
    """`target` holds `data` completely or is left as it was; `data` is written to `temporary` first."""
    with replaced_atomically(target, temporary) as partial:
        partial.write_bytes(data)


def write_report(target: Path, report: object) -> str | None:
    """`report` as indented JSON in `target`, atomically; None once written, else the one-line reason it was not
    (a full disk, no permission). The results it describes are already on disk: a caller reports the reason with
    the run's other errors rather than stopping."""
    try:
        write_atomically(target, json.dumps(report, indent=2).encode(), hidden_sibling(target, "partial"))
    except OSError as error:
        return f"--json {target}: the report could not be written ({error.strerror or error})."
    return None
