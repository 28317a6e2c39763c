"""Fixtures shared by the test modules."""

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from codeformer_core.layouts import Task
from codeformer_core.weights.registry import CODEFORMER_FILES
from tests.support.checkpoint_files import WRITERS
from tests.support.shared_data import samples_dir

from .fake_hub import fake_hub  # noqa: F401 - a fixture, shared by every module from here

SAMPLES = samples_dir()


@pytest.fixture(scope="session")
def stand_in_weights(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Path]]:
    """`stand_in_weights(*names)`: a new weights directory holding the named official files' stand-ins.

    Each file is generated at most once per session (a CodeFormer file is ~370 MB and takes seconds) and
    hard-linked into every directory that asks for it.
    """
    store = tmp_path_factory.mktemp("stand-in-weights")
    lock = threading.Lock()

    def directory_with(*names: str) -> Path:
        target = Path(tmp_path_factory.mktemp("weights"))
        for name in names:
            original = store / name
            with lock:
                if not original.exists():
                    WRITERS[name](original.with_suffix(".partial"))
                    os.replace(original.with_suffix(".partial"), original)
            os.link(original, target / name)
        return target

    yield directory_with
    shutil.rmtree(store, ignore_errors=True)


@pytest.fixture(scope="session")
def official_checkpoint(stand_in_weights: Callable[..., Path]) -> Callable[[Task], Path]:
    """`official_checkpoint(task)`: the path of a CodeFormer checkpoint for `task` in the published format."""

    def path_for(task: Task) -> Path:
        name = CODEFORMER_FILES[task]
        return stand_in_weights(name) / name

    return path_for


@pytest.fixture
def nnpack_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """The input shapes of the NNPACK convolutions run during the test, in order."""
    calls: list[tuple[int, ...]] = []
    convolution = torch._nnpack_spatial_convolution

    def counted(x: torch.Tensor, *rest: object) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return convolution(x, *rest)

    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", counted)
    return calls
