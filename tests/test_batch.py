"""Many photos at once: the batch module (results, error lines, the zip), its tab, and the command line on a folder.

The photos are aligned 512x512 faces from the shared samples, so no detector is needed; the network runs with
golden-filled weights in the published checkpoint format (the session's stand-in weights, tests/conftest.py).
"""

import zipfile

import cv2
import gradio as gr
import numpy as np
import pytest

from codeformer_core import cli
from codeformer_core.batch import run_batch
from codeformer_core.errors import InvalidOptionError, WeightsUnavailableError
from codeformer_core.options import RestoreOptions
from codeformer_core.pipeline import Pipeline
from codeformer_core.settings import HubSettings
from codeformer_core.weights import WeightStore
from demo.batch_tab import BatchHandler, build_batch_tab
from demo.outputs import RequestFiles

from .conftest import SAMPLES

ALIGNED = SAMPLES / "aligned"
NOT_AN_IMAGE = b"These are my holiday notes, not a picture.\n"


@pytest.fixture(scope="module")
def restore_pipeline(stand_in_weights) -> Pipeline:
    """A CPU pipeline whose weights directory holds the golden-filled restore checkpoint."""
    return Pipeline(WeightStore(stand_in_weights("codeformer.pth")), device="cpu")


@pytest.fixture
def weightless_pipeline(tmp_path) -> Pipeline:
    """A pipeline with no weights and no network: fine wherever no network may run."""
    return Pipeline(WeightStore(tmp_path / "no-weights", hub=HubSettings(offline=True)), device="cpu")


def png_pixels(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def test_a_bad_file_is_listed_and_the_others_are_zipped_under_safe_names(restore_pipeline, tmp_path):
    first = (ALIGNED / "0240.png").read_bytes()
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    inputs = [
        ("0240.png", first),
        ("notes.png", NOT_AN_IMAGE),
        ("../../etc/My face (1).png", ALIGNED / "0342.png"),
    ]
    calls = []

    result = run_batch(
        restore_pipeline, inputs, RestoreOptions(aligned=True), outputs, progress=lambda *call: calls.append(call)
    )

    assert calls == [(1, 3, "0240.png"), (2, 3, "notes.png"), (3, 3, "../../etc/My face (1).png")]
    assert [item.name for item in result.items] == ["0240.png", "../../etc/My face (1).png"]
    assert len(result.errors) == 1
    assert result.errors[0].startswith("notes.png: ")
    assert "not a" in result.errors[0]
    assert "notes.png" in result.summary() and "2 of 3 photo(s) done" in result.summary()
    # Everything we wrote stays in the given directory: the user's path-like name chose nothing.
    assert sorted(p.name for p in outputs.iterdir()) == sorted(
        [result.archive.name, *(item.output.name for item in result.items)]
    )
    assert result.items[1].output.name.startswith("My_face_1-")

    with zipfile.ZipFile(result.archive) as bundle:
        assert bundle.namelist() == ["001_0240.png", "002_My_face_1.png"]
        zipped = [png_pixels(bundle.read(name)) for name in bundle.namelist()]
    for item, pixels in zip(result.items, zipped):
        assert pixels.shape == (512, 512, 3)
        assert np.array_equal(pixels, png_pixels(item.output.read_bytes()))
        assert item.report.faces_restored == 1
    # The network really processed the face: the result is not the input.
    assert np.abs(zipped[0].astype(int) - png_pixels(first).astype(int)).mean() > 10


def test_a_batch_where_every_file_fails_has_no_archive(weightless_pipeline, tmp_path):
    outputs = tmp_path / "outputs"
    outputs.mkdir()

    result = run_batch(weightless_pipeline, [("a.png", b""), ("b.jpg", NOT_AN_IMAGE)], RestoreOptions(), outputs)

    assert result.items == [] and result.archive is None
    assert [line.split(":")[0] for line in result.errors] == ["a.png", "b.jpg"]
    assert list(outputs.iterdir()) == []


def test_missing_weights_stop_the_batch_instead_of_failing_each_photo(weightless_pipeline, tmp_path):
    photos = [(name, ALIGNED / name) for name in ("0240.png", "0342.png")]

    with pytest.raises(WeightsUnavailableError, match="codeformer.pth"):
        run_batch(weightless_pipeline, photos, RestoreOptions(aligned=True), tmp_path)
    assert list(tmp_path.glob("*.png")) == [] and list(tmp_path.glob("*.zip")) == []


def test_a_batch_over_its_cap_is_refused_in_one_line_before_any_photo_runs(weightless_pipeline, tmp_path):
    photos = [(f"{index}.png", NOT_AN_IMAGE) for index in range(4)]
    calls = []

    with pytest.raises(InvalidOptionError) as refused:
        run_batch(weightless_pipeline, photos, RestoreOptions(), tmp_path, progress=lambda *call: calls.append(call),
                  max_photos=3)  # fmt: skip

    assert str(refused.value) == "A batch holds at most 3 photos; got 4. Split it into smaller batches."
    assert calls == [] and list(tmp_path.iterdir()) == []
    assert len(run_batch(weightless_pipeline, photos[:3], RestoreOptions(), tmp_path, max_photos=3).errors) == 3


def test_cli_restores_a_folder_and_reports_the_bad_file(stand_in_weights, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "face.png").write_bytes((ALIGNED / "0412.png").read_bytes())
    (folder / "broken.png").write_bytes(NOT_AN_IMAGE)
    (folder / "readme.txt").write_text("not an input: wrong suffix")
    weights_dir = stand_in_weights("codeformer.pth")
    out = tmp_path / "out"

    code = cli.main(
        ["restore", str(folder), "-o", str(out), "--aligned", "--weights-dir", str(weights_dir), "--device", "cpu"]
    )

    assert code == 1
    error_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "broken.png" in error_lines[0]
    assert [p.name for p in out.iterdir()] == ["face.png"]
    assert png_pixels((out / "face.png").read_bytes()).shape == (512, 512, 3)


def test_cli_collects_photos_and_videos_from_folders(tmp_path):
    for name in ("b.MP4", "a.png", "c.webm", "d.txt", "e.mkv"):
        (tmp_path / name).write_bytes(b"x")

    files, errors = cli.collect_inputs([tmp_path, tmp_path / "missing.mov"])

    assert [p.name for p in files] == ["a.png", "b.MP4", "c.webm", "e.mkv"]
    assert errors == [f"{tmp_path / 'missing.mov'}: no such file or folder"]


def test_the_batch_tab_serves_batch_and_lists_each_bad_upload(weightless_pipeline, tmp_path):
    with gr.Blocks() as page:
        build_batch_tab(weightless_pipeline, RequestFiles(), max_photos=2)
    assert "batch" in {fn.api_name for fn in page.fns.values()}
    assert [block.label for block in page.blocks.values() if isinstance(block, gr.File)][0] == "Photos (up to 2)"
    upload = tmp_path / "scan.png"
    upload.write_bytes(NOT_AN_IMAGE)
    handler = BatchHandler(weightless_pipeline, RequestFiles(), max_photos=2)
    settings = ("restore", 0.5, 2, False, False, False, "dlib", False)

    gallery, archive, status = handler.run([str(upload)], *settings)

    assert gallery == [] and archive is None
    assert "0 of 1 photo(s) done" in status and "\nscan.png: The file is not a PNG" in status
    with pytest.raises(gr.Error, match="Upload one or more photos first"):
        handler.run([], *settings)
    with pytest.raises(gr.Error) as refused:
        handler.run([str(upload)] * 3, *settings)
    assert refused.value.message == "A batch holds at most 2 photos; got 3. Split it into smaller batches."
