"""Clocks for the check: synchronised host time around device work, medians over repeats, and the run's time box."""

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import torch

T = TypeVar("T")


class OutOfTime(Exception):
    """The run's time box has too little left for the next step; the section stops and reports what it has."""


@dataclass
class Deadline:
    """The whole run's time box: a section asks for what its next step needs before starting it."""

    seconds: float
    start: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def require(self, seconds: float, what: str) -> None:
        if self.left() < seconds:
            raise OutOfTime(f"{what} needs ~{seconds:.0f} s and {max(self.left(), 0):.0f} s of the time box are left")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work: CUDA calls return before the GPU has finished them."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(work: Callable[[], T], device: torch.device) -> tuple[T, float]:
    """work()'s result and its wall seconds, the device synchronised on both sides."""
    synchronize(device)
    start = time.perf_counter()
    result = work()
    synchronize(device)
    return result, time.perf_counter() - start


@dataclass(frozen=True)
class Series:
    """Seconds of each timed call of one measurement."""

    seconds: tuple[float, ...]

    @property
    def median_ms(self) -> float:
        return 1000 * statistics.median(self.seconds)

    @property
    def spread(self) -> float:
        """(slowest - fastest) / fastest: how far to trust a difference between two medians."""
        return max(self.seconds) / min(self.seconds) - 1


def series(
    work: Callable[[], object], device: torch.device, *, warmup: int, repeats: int, deadline: Deadline, what: str
) -> Series:
    """`warmup` untimed calls, then `repeats` timed ones; stops early (keeping at least one) if the time box runs
    short, and raises OutOfTime if not even the first call fits."""
    _, estimate = time_once(work, device)  # the first warm-up call, or the first timed one without warm-up
    timed = [] if warmup > 0 else [estimate]
    for _ in range(warmup - 1):
        deadline.require(estimate, f"{what} (warm-up)")
        _, estimate = time_once(work, device)
    while len(timed) < repeats:
        if timed and deadline.left() < 2 * estimate:
            break
        deadline.require(estimate, what)
        _, estimate = time_once(work, device)
        timed.append(estimate)
    return Series(tuple(timed))


def peak_memory_mb(device: torch.device) -> float | None:
    """The most GPU memory torch's allocator has handed out since its last reset, in MiB; None on a CPU."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


@contextlib.contextmanager
def swapped(owner: object, name: str, value: object) -> Iterator[None]:
    """`owner.name` is `value` while the block runs: a torch flag, or an engine function, which the engine looks up
    at call time."""
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


@contextlib.contextmanager
def counted(owner: object, name: str) -> Iterator[list[tuple]]:
    """Record each call of `owner.name` while the block runs."""
    original = getattr(owner, name)
    calls: list[tuple] = []

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(args)
        return original(*args, **kwargs)

    with swapped(owner, name, counting):
        yield calls
