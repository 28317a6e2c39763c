"""ZeroGPU: every network run happens inside a `spaces.GPU` call, asks for the duration the rule gives, and takes and
returns only what pickles; off ZeroGPU nothing changes, even with the real `spaces` imported.

A stand-in `spaces` module records each call, pickles its arguments and result as ZeroGPU does across processes,
and notes whether the pipeline ran inside the call.
"""

import math
import pickle
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import app
from codeformer_core.errors import WeightsUnavailableError
from codeformer_core.faces.detection import DetectedFace
from codeformer_core.images import read_image, read_image_array
from codeformer_core.options import RestoreOptions
from codeformer_core.pipeline import Pipeline, RestoreRequest
from codeformer_core.settings import HubSettings
from codeformer_core.video import restore_video
from codeformer_core.weights import WeightStore
from demo.batch_tab import BatchHandler
from demo.outputs import RequestFiles
from demo.zerogpu import (
    FACES_PER_VIDEO_FRAME,
    MAX_CALL_SECONDS,
    SECONDS_PER_FACE,
    SETUP_SECONDS,
    ZeroGpuRestorer,
    run_many_seconds,
    run_seconds,
    sweep_seconds,
)

from .conftest import SAMPLES
from .test_video import faceless_frames, write_clip

FACE = SAMPLES / "aligned" / "0240.png"


class StandInSpaces(types.ModuleType):
    """`spaces` as ZeroGPU runs it, without a GPU: GPU(duration=...) records (function, seconds) per call."""

    def __init__(self) -> None:
        super().__init__("spaces")
        self.calls: list[tuple[str, int]] = []
        self.inside = False

    def GPU(self, task=None, *, duration=None):  # noqa: N802 - the real decorator's name
        def decorate(function):
            def call(*args, **kwargs):
                seconds = duration(*args, **kwargs) if callable(duration) else duration
                args, kwargs = pickle.loads(pickle.dumps((args, kwargs)))  # into the call's process
                self.calls.append((function.__name__, seconds))
                self.inside = True
                try:
                    result = function(*args, **kwargs)
                finally:
                    self.inside = False
                return pickle.loads(pickle.dumps(result))  # and back

            return call

        return decorate if task is None else decorate(task)


@pytest.fixture
def spaces_stand_in(monkeypatch) -> StandInSpaces:
    stand_in = StandInSpaces()
    monkeypatch.setitem(sys.modules, "spaces", stand_in)
    return stand_in


@pytest.fixture(scope="module")
def pipeline(stand_in_weights) -> Pipeline:
    return Pipeline(WeightStore(stand_in_weights("codeformer.pth"), hub=HubSettings(offline=True)), device="cpu")


@pytest.fixture
def runs_inside(monkeypatch, pipeline, spaces_stand_in) -> list[bool]:
    """For each Pipeline.run, whether it ran inside a GPU call."""
    seen: list[bool] = []
    original = Pipeline.run

    def spied(self, *args, **kwargs):
        seen.append(spaces_stand_in.inside)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "run", spied)
    return seen


def test_a_photo_runs_inside_one_gpu_call_and_comes_back_unchanged(pipeline, spaces_stand_in, runs_inside):
    face = read_image(FACE)
    options = RestoreOptions(aligned=True, fidelity=0.7)
    restorer = ZeroGpuRestorer(pipeline, spaces_stand_in.GPU)

    on_gpu = restorer.run(RestoreRequest(face, options))
    direct = pipeline.run(RestoreRequest(face, options))

    assert runs_inside == [True, False]
    assert spaces_stand_in.calls == [("_run", run_seconds(RestoreRequest(face, options)))]
    assert np.array_equal(on_gpu.image, direct.image) and on_gpu.report.faces_restored == 1


def test_a_fidelity_sweep_runs_inside_one_gpu_call(pipeline, spaces_stand_in, monkeypatch):
    inside = []
    original = Pipeline.fidelity_sweep
    def spied(self, *args, **kwargs):
        inside.append(spaces_stand_in.inside)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "fidelity_sweep", spied)
    face, options = read_image(FACE), RestoreOptions(aligned=True)

    restorer = ZeroGpuRestorer(pipeline, spaces_stand_in.GPU)
    sweep = restorer.fidelity_sweep(RestoreRequest(face, options), 0, (0.0, 1.0))

    assert inside == [True] and sweep.fidelities == (0.0, 1.0) and len(sweep.faces) == 2
    assert spaces_stand_in.calls == [("_sweep", sweep_seconds(RestoreRequest(face, options), 0, (0.0, 1.0)))]
    assert not np.array_equal(sweep.faces[0], sweep.faces[1])


def test_an_engine_error_inside_a_call_reaches_the_visitor_as_itself(tmp_path, spaces_stand_in):
    offline = Pipeline(WeightStore(tmp_path / "empty", hub=HubSettings(offline=True)), device="cpu")
    restorer = ZeroGpuRestorer(offline, spaces_stand_in.GPU)

    with pytest.raises(WeightsUnavailableError, match="codeformer.pth"):
        restorer.run(RestoreRequest(read_image(FACE), RestoreOptions(aligned=True)))
    assert [name for name, _ in spaces_stand_in.calls] == ["_run"]


def test_durations_grow_with_faces_pixels_upscale_and_upsamplers():
    small = read_image_array(np.zeros((225, 225, 3), np.uint8))  # enlarged to 512 x 512: 0.26 MP
    two_faces = [DetectedFace(np.zeros(4, np.float32), np.zeros((5, 2), np.float32), 1.0)] * 2
    working_mp = 512 * 512 / 1e6

    def seconds(image, faces=None, **options) -> int:
        return run_seconds(RestoreRequest(image, RestoreOptions(**options), faces=faces))

    assert seconds(small, two_faces, upscale=2) == math.ceil(
        SETUP_SECONDS + 2 * SECONDS_PER_FACE + working_mp * 4 * 0.5
    )
    unknown = seconds(small, upscale=2)
    assert unknown > seconds(small, two_faces, upscale=2)  # faces not known yet
    assert seconds(small, upscale=2, background="realesrgan") > unknown
    assert seconds(small, upscale=2, face_upsample=True) > unknown
    assert seconds(small, upscale=4) > unknown
    huge = read_image_array(np.zeros((4000, 4000, 3), np.uint8))
    assert seconds(huge, upscale=4, background="realesrgan") == MAX_CALL_SECONDS
    frames = [RestoreRequest(small, RestoreOptions(upscale=1))] * 3
    assert run_many_seconds(frames) == math.ceil(
        SETUP_SECONDS + 3 * (FACES_PER_VIDEO_FRAME * SECONDS_PER_FACE + working_mp * 0.5)
    )


def test_a_batch_is_one_gpu_call_per_photo(pipeline, spaces_stand_in, runs_inside, tmp_path):
    restorer = ZeroGpuRestorer(pipeline, spaces_stand_in.GPU)
    photos = [str(SAMPLES / "aligned" / name) for name in ("0240.png", "0342.png")]

    handler = BatchHandler(restorer, RequestFiles(), max_photos=None)
    result = handler.run(photos, "restore", 0.5, 1, True, False, False, "dlib", False)

    assert len(result.gallery) == 2 and result.archive is not None
    assert [name for name, _ in spaces_stand_in.calls] == ["_run", "_run"] and runs_inside == [True, True]


def test_a_video_goes_in_groups_of_frames_that_fit_a_call(
    pipeline, spaces_stand_in, runs_inside, tmp_path, monkeypatch
):
    # 64 x 48 frames are enlarged to 683 x 512: four faces each on paper, ~2.2 s a frame; a call of 16 s holds 2.
    monkeypatch.setattr("demo.zerogpu.MAX_CALL_SECONDS", 16)
    restorer = ZeroGpuRestorer(pipeline, spaces_stand_in.GPU)
    options = RestoreOptions(detector="dlib", upscale=1)
    clip = write_clip(tmp_path / "clip.mp4", faceless_frames(7, 64, 48), audio=False)
    per_call = restorer.frames_per_call((64, 48), options)
    assert per_call == 2

    result = restore_video(clip, tmp_path / "out.mp4", restorer, options)

    assert result.frames == 7 and all(runs_inside) and len(runs_inside) == 7
    assert [name for name, _ in spaces_stand_in.calls] == ["_run_many"] * math.ceil(7 / per_call)


def test_the_real_spaces_off_zerogpu_changes_nothing(monkeypatch, pipeline):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    import spaces

    def plain(x: int) -> int:
        return x + 1

    face, options = read_image(FACE), RestoreOptions(aligned=True)
    restorer = ZeroGpuRestorer(pipeline, spaces.GPU)

    assert spaces.GPU(duration=30)(plain) is plain and spaces.GPU(plain) is plain
    request = RestoreRequest(face, options)
    assert np.array_equal(restorer.run(request).image, pipeline.run(request).image)
    assert torch.cuda.is_available() is False


def test_the_app_on_zerogpu_imports_spaces_first_preloads_and_wraps_every_call(monkeypatch, spaces_stand_in):
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setenv("SPACE_ID", "someone/codeformer")
    order: list[str] = []

    def resolve(requested):
        order.append("device" if "spaces" in sys.modules else "device before spaces")
        return torch.device("cpu")

    built = SimpleNamespace()
    monkeypatch.setattr(app, "resolve_device", resolve)
    monkeypatch.setattr(Pipeline, "preload", lambda self, requests: order.append(f"preload {len(requests)}"))
    monkeypatch.setattr(app, "build_demo", lambda restorer, settings, profile: setattr(built, "restorer", restorer))
    monkeypatch.setattr(app, "serve", lambda demo, **kwargs: setattr(built, "serve", kwargs))

    assert app.main(["--device", "cpu"]) == 0

    assert order == ["device", "preload 4"]
    assert isinstance(built.restorer, ZeroGpuRestorer)
    assert built.serve["host"] == "0.0.0.0" and built.serve["concurrency"] == 2


@pytest.mark.parametrize("space_id", ["someone/codeformer", None])
def test_a_plain_space_preloads_without_zerogpu_a_missing_file_only_warns_and_a_laptop_loads_lazily(
    monkeypatch, capsys, space_id
):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    if space_id:
        monkeypatch.setenv("SPACE_ID", space_id)
    else:
        monkeypatch.delenv("SPACE_ID", raising=False)
    preloaded: list[int] = []

    def preload(self, requests):
        preloaded.append(len(requests))
        raise WeightsUnavailableError("codeformer.pth could not be downloaded: the Hub is unreachable")

    built = SimpleNamespace()
    monkeypatch.setattr(Pipeline, "preload", preload)
    monkeypatch.setattr(app, "build_demo", lambda restorer, settings, profile: setattr(built, "restorer", restorer))
    monkeypatch.setattr(app, "serve", lambda demo, **kwargs: setattr(built, "serve", kwargs))

    assert app.main(["--device", "cpu"]) == 0

    assert not isinstance(built.restorer, ZeroGpuRestorer)
    if space_id:
        assert preloaded == [4]
        assert capsys.readouterr().err.strip() == (
            "warning: models not loaded ahead: codeformer.pth could not be downloaded: the Hub is unreachable")
    else:
        assert preloaded == [] and capsys.readouterr().err == ""
