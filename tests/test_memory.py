"""What a finished stage leaves behind: NNPACK's workspace stays with a living thread, freed heap blocks with the C
library; `on_own_thread` and `release_freed_memory` give both back."""

import contextvars
import ctypes
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

import pytest
import torch
from torch import nn

from codeformer_core.compat import nnpack_available
from codeformer_core.memory import on_own_thread, release_freed_memory
from codeformer_core.network import cpu_convolutions
from codeformer_core.network.cpu_convolutions import use_fast_cpu_convolutions

T = TypeVar("T")

needs_proc = pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads Linux's /proc")


def _resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _wait_until_ended(native_ids: list[int]) -> None:
    """Returns once these threads are gone from the process. Why: `join` returns when a thread's Python code is done,
    before its C++ thread-local destructors run (NNPACK frees its workspace there), so a reading taken right after
    a join may still hold the workspace, and the next reading would see it vanish."""
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/self/task/{native_id}") for native_id in native_ids):
        assert time.monotonic() < deadline, f"threads {native_ids} still running after 10 s"
        time.sleep(0.005)


def _grows_while_the_caller_lives(work: Callable[[], object], ran_on: list[int]) -> float:
    """MB of resident memory a thread that ran `work` (and dropped its result) still holds while it lives on.
    `ran_on` collects the native ids of the threads `work` ran on: those but the caller must have ended."""
    done, release = threading.Event(), threading.Event()

    def call_then_live_on() -> None:
        work()
        done.set()
        release.wait()

    release_freed_memory()
    before = _resident_mb()
    caller = threading.Thread(target=call_then_live_on)
    caller.start()
    done.wait()
    _wait_until_ended([native_id for native_id in ran_on if native_id != caller.native_id])
    # Freed blocks the C library keeps in its arenas depend on what ran before (so both readings are taken
    # trimmed): only what the thread itself still holds is measured.
    release_freed_memory()
    grown = _resident_mb() - before
    release.set()
    caller.join()
    _wait_until_ended([caller.native_id])
    return grown


def _convolver(channels: int, side: int, ran_on: list[int]) -> Callable[[], torch.Tensor]:
    holder = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1))
    assert use_fast_cpu_convolutions(holder) == 1
    x = torch.randn(1, channels, side, side)

    def convolve() -> torch.Tensor:
        ran_on.append(threading.get_native_id())
        with torch.inference_mode():
            return holder(x)

    return convolve


def _in_a_fresh_process(measure: Callable[[], T]) -> T:
    """measure() in a new interpreter. Why: threads that earlier tests left running (servers, Ray's driver) allocate
    while a reading is taken, by tens of MB; a fresh process holds nothing but the measurement."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure).result()


def _kept_and_released() -> tuple[float, float]:
    """MB a living thread keeps after a convolution run on it, and after one run through `on_own_thread`."""
    ran_on: list[int] = []
    convolve = _convolver(128, 256, ran_on)  # NNPACK's workspace for 128 channels at 256 px: ~110 MB
    kept = _grows_while_the_caller_lives(convolve, ran_on)
    released = _grows_while_the_caller_lives(lambda: on_own_thread(convolve), ran_on)
    return kept, released


def _kept_after_a_large_convolution() -> float:
    # Whole, 128 -> 128 channels at 384 px would need 64 x 64 tiles x 64 floats x 256 channels = 268 MB.
    ran_on: list[int] = []
    return _grows_while_the_caller_lives(_convolver(128, 384, ran_on), ran_on)


@needs_proc
@pytest.mark.skipif(not nnpack_available(), reason="this torch build has no NNPACK")
def test_a_stage_on_its_own_thread_leaves_no_workspace_behind_in_a_living_thread() -> None:
    kept, released = _in_a_fresh_process(_kept_and_released)
    assert kept > 60
    assert released < kept / 4


@needs_proc
@pytest.mark.skipif(not nnpack_available(), reason="this torch build has no NNPACK")
def test_the_workspace_a_thread_keeps_is_bounded_by_the_limit() -> None:
    kept = _in_a_fresh_process(_kept_after_a_large_convolution)
    assert kept < cpu_convolutions.WORKSPACE_LIMIT / 2**20 + 20


def test_own_thread_returns_the_result_and_raises_the_error() -> None:
    assert on_own_thread(lambda: threading.current_thread().name).startswith("codeformer-stage")

    def fails() -> None:
        raise ValueError("bad face")

    with pytest.raises(ValueError, match="bad face"):
        on_own_thread(fails)


def test_own_thread_sees_the_callers_context_variables() -> None:
    event = contextvars.ContextVar("event")
    event.set("event 7")
    assert on_own_thread(event.get) == "event 7"


@needs_proc
@pytest.mark.skipif(sys.platform != "linux" or not hasattr(ctypes.CDLL(None), "malloc_trim"), reason="not glibc")
def test_freed_heap_blocks_go_back_to_the_system() -> None:
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    block = 64 * 1024  # below any mmap threshold: served from the heap, where freed space stays resident
    blocks = [libc.malloc(block) for _ in range(3200)]  # 200 MB
    for address in blocks:
        ctypes.memset(address, 1, block)
    # One block in 16 stays allocated, so the heap cannot simply shrink from its top.
    for index, address in enumerate(blocks):
        if index % 16:
            libc.free(address)
    before = _resident_mb()
    assert release_freed_memory() is True
    dropped = before - _resident_mb()
    for address in blocks[::16]:
        libc.free(address)
    assert dropped > 100
