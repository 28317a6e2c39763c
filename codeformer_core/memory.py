"""Memory a finished stage would otherwise keep: NNPACK's per-thread workspace and the C library's freed blocks.

Both stay in the process after the tensors are gone, so a server that restored one photo would carry them into
every later run; each network stage therefore runs through `on_own_thread`, which leaves neither behind.
"""

import contextvars
import ctypes
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def on_own_thread(work: Callable[[], T]) -> T:
    """work()'s result (or its exception), computed on a new thread that ends with it; the memory it freed is
    then handed back to the system.

    Why a thread: NNPACK keeps a workspace per calling thread, sized for the largest convolution that thread has
    run, and frees it only when the thread ends; a web server's worker threads live on. The caller's context
    variables go along (Gradio finds an event's progress bar through them).
    """
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="codeformer-stage") as pool:
            return pool.submit(contextvars.copy_context().run, work).result()
    finally:
        release_freed_memory()


def release_freed_memory() -> bool:
    """Return the C library's free heap pages to the system; False where the C library has no way to (not glibc).

    Why: glibc keeps freed blocks below its mmap threshold (up to 32 MB, so most feature maps under 512 px) in
    its arenas for reuse; after a network stage that is hundreds of MB of resident memory nothing uses. Trimming
    takes milliseconds.
    """
    trim = getattr(_c_library(), "malloc_trim", None)
    if trim is None:
        return False
    trim(0)
    return True


@functools.cache
def _c_library() -> ctypes.CDLL | None:
    """The symbols the process already has loaded, the C library's among them (None where that can't be opened)."""
    try:
        return ctypes.CDLL(None)
    except (OSError, TypeError):  # TypeError: Windows has no handle for "the process itself"
        return None
