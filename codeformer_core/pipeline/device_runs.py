"""How the pipeline's stages run a network on its device: in batches that shrink when the device runs out of memory,
and on a CPU on a thread of their own."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch

from ..errors import DeviceError
from ..memory import on_own_thread
from ..network.batches import batch_size_for

T = TypeVar("T")

OUT_OF_MEMORY = "The device ran out of memory on this image. Try a smaller image, a lower upscale, or --device cpu."


class DeviceRuns:
    """device: where the networks are. forget: drops what the pipeline keeps between runs, to free memory."""

    def __init__(self, device: torch.device, forget: Callable[[], None]) -> None:
        self.device = device
        self._forget = forget

    def run(self, work: Callable[[int], T]) -> T:
        """work(faces per batch); on a CPU on a thread of its own, so that NNPACK's per-thread workspace and the
        heap it freed go when it ends (`memory.on_own_thread`); out of memory on a GPU frees the device's cache
        and runs work again with half the faces per batch, down to one."""

        def with_retry() -> T:
            batch = batch_size_for(self.device)
            while True:
                try:
                    return work(batch)
                except torch.OutOfMemoryError:
                    if batch == 1:
                        raise
                    self.free_memory()
                    batch //= 2

        return on_own_thread(with_retry) if self.device.type == "cpu" else with_retry()

    @contextmanager
    def memory_errors(self) -> Iterator[None]:
        """A run that still ran out of memory becomes a one-line DeviceError, the memory it held freed."""
        try:
            yield
        except torch.OutOfMemoryError as error:
            self.free_memory()
            raise DeviceError(OUT_OF_MEMORY) from error

    def free_memory(self) -> None:
        self._forget()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
