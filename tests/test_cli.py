"""The command line's refusals: each bad argument or unwritable destination is one `error:` line and exit code 1,
never a traceback, and `--backend` reaches the pipelines wherever they are built."""

import json
import sys

import cv2
import numpy as np
import onnx
import pytest

import app
from codeformer_core import cli
from codeformer_core.cluster import job
from codeformer_core.cluster.workers import PhotoWorker
from codeformer_core.commands.engine_arguments import with_overrides
from codeformer_core.errors import InvalidOptionError
from codeformer_core.export import onnx_export
from codeformer_core.options import RestoreOptions
from codeformer_core.settings import Settings

from .conftest import SAMPLES

ALIGNED_FACE = SAMPLES / "aligned" / "0412.png"


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """A run that should have been refused and was not fails on missing weights instead of fetching them."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def offline(tmp_path) -> list[str]:
    """Arguments that keep a run away from ./weights."""
    return ["--weights-dir", str(tmp_path / "no-weights"), "--device", "cpu"]


def error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


@pytest.fixture
def picture(tmp_path):
    """A small faceless picture, as photos/01.png."""
    path = tmp_path / "photos" / "01.png"
    path.parent.mkdir()
    cv2.imwrite(str(path), np.full((40, 60, 3), 128, np.uint8))
    return path


def test_backend_reaches_the_ray_actors_pipelines(monkeypatch, tmp_path):
    given = {}

    def run_on_cluster(args, options, settings, mask):
        given.update(settings=settings, options=options)
        return 0

    monkeypatch.setattr(job, "run_on_cluster", run_on_cluster)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what find_spec reports for a missing package

    code = cli.main(["restore", str(tmp_path), "-o", str(tmp_path / "out"), "--ray", "--backend", "onnxruntime"])

    assert code == 0
    with pytest.raises(InvalidOptionError, match="^The onnxruntime backend needs the onnxruntime"):
        PhotoWorker(given["settings"], given["options"], device="cpu")  # what each actor builds


def test_a_face_index_in_superscript_is_one_error_line(picture, tmp_path, capsys):
    code = cli.main(["restore", str(picture), "-o", str(tmp_path / "out"), "--faces", "²", *offline(tmp_path)])

    assert code == 1
    assert error_lines(capsys) == ["error: --faces: a face is given by its index in the report (0, 1, ...); got '²'"]


def test_a_json_report_into_a_missing_folder_is_refused_before_any_work(picture, tmp_path, capsys):
    report = tmp_path / "nowhere" / "report.json"

    code = cli.main(["restore", str(picture), "-o", str(tmp_path / "out"), "--json", str(report), *offline(tmp_path)])

    assert code == 1
    assert error_lines(capsys) == [f"error: --json {report}: the folder {report.parent} does not exist."]
    assert not (tmp_path / "out").exists()


def test_a_json_report_that_cannot_be_written_is_one_line_after_the_results(stand_in_weights, tmp_path, capsys):
    out, report = tmp_path / "out", tmp_path / "report.json"
    (tmp_path / ".report.json.partial").mkdir()  # a folder where the report is written before its rename
    weights = stand_in_weights("codeformer.pth")

    code = cli.main(["restore", str(ALIGNED_FACE), "-o", str(out), "--aligned", "--weights-dir", str(weights),
                     "--device", "cpu", "--json", str(report)])  # fmt: skip

    assert code == 1
    (line,) = error_lines(capsys)
    assert line.startswith(f"error: --json {report}: the report could not be written (") and line.endswith(").")
    assert (out / f"{ALIGNED_FACE.stem}.png").is_file() and not report.exists()


def test_an_output_folder_that_is_a_file_is_refused_in_one_line(picture, tmp_path, capsys):
    taken = tmp_path / "results"
    taken.write_text("a file, not a folder")

    code = cli.main(["restore", str(picture), "-o", str(taken), *offline(tmp_path)])

    assert code == 1
    assert error_lines(capsys) == [f"error: -o {taken}: that is a file, not a folder; name a folder for the results."]


def test_a_result_that_cannot_be_written_is_one_line_and_the_others_are_written(stand_in_weights, tmp_path, capsys):
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    for name in ("a.png", "b.png"):
        (photos / name).write_bytes(ALIGNED_FACE.read_bytes())
    (out / "a.png").mkdir(parents=True)  # a folder where a's result would go
    weights = stand_in_weights("codeformer.pth")

    code = cli.main(["restore", str(photos), "-o", str(out), "--aligned", "--weights-dir", str(weights),
                     "--device", "cpu"])  # fmt: skip

    assert code == 1
    (line,) = error_lines(capsys)
    assert line.startswith(f"error: {photos / 'a.png'}: ") and "Is a directory" in line
    assert (out / "b.png").is_file()


def test_faces_from_a_report_with_two_photos_of_that_name_is_refused(picture, tmp_path, capsys):
    report = tmp_path / "faces.json"
    report.write_text(json.dumps({"a/01.png": {"faces": []}, "b/01.png": {"faces": []}}))

    code = cli.main(["restore", str(picture), "-o", str(tmp_path / "out"), "--faces-from", str(report),
                     *offline(tmp_path)])  # fmt: skip

    assert code == 1
    assert error_lines(capsys) == [
        f"error: {picture}: --faces-from {report} lists several photos named 01.png (a/01.png, b/01.png); give the"
        " input by the path the report uses."
    ]
    assert not (tmp_path / "out" / "01.png").exists()


def test_export_to_a_folder_is_refused_before_exporting(tmp_path, capsys):
    code = cli.main(["export", "onnx", "-o", str(tmp_path), "--weights-dir", str(tmp_path / "no-weights")])

    assert code == 1
    assert error_lines(capsys) == [f"error: -o {tmp_path} is a folder; name the .onnx file to write."]


def test_export_that_cannot_write_its_file_is_one_error_line(monkeypatch, tmp_path, capsys):
    class Store:
        weights_dir = tmp_path

        def load(self, name, loader, progress):
            return "graphs"

    tiny = onnx.helper.make_model(onnx.helper.make_graph([], "empty", [], []))
    monkeypatch.setattr(Settings, "weight_store", lambda settings, weights_dir=None: Store())  # tested in test_onnx
    monkeypatch.setattr(onnx_export, "single_model", lambda graphs, weight_type: tiny)
    (tmp_path / "file").write_text("not a folder")
    output = tmp_path / "file" / "codeformer.onnx"

    code = cli.main(["export", "onnx", "-o", str(output)])

    assert code == 1
    (line,) = error_lines(capsys)
    assert line.startswith(f"error: {output} could not be written (")


def test_faces_from_with_aligned_is_refused_in_one_line(picture, tmp_path, capsys):
    report = tmp_path / "faces.json"
    report.write_text(json.dumps({"01.png": {"faces": []}}))

    code = cli.main(["restore", str(picture), "-o", str(tmp_path / "out"), "--aligned", "--faces-from", str(report),
                     *offline(tmp_path)])  # fmt: skip

    assert code == 1
    assert error_lines(capsys) == [
        "error: --faces-from and --aligned exclude each other: an aligned face needs no landmarks."
    ]
    assert not (tmp_path / "out").exists()


def test_faces_from_with_a_video_is_refused_for_that_video(tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not read: refused before")
    report = tmp_path / "faces.json"
    report.write_text(json.dumps({"clip.mp4": {"faces": []}}))

    code = cli.main(["restore", str(clip), "-o", str(tmp_path / "out"), "--faces-from", str(report),
                     *offline(tmp_path)])  # fmt: skip

    assert code == 1
    assert error_lines(capsys) == [f"error: {clip}: --faces-from applies to photos, not videos."]
    assert not (tmp_path / "out" / "clip.mp4").exists()


def test_a_faces_report_that_is_not_an_object_is_refused_in_one_line(picture, tmp_path, capsys):
    report = tmp_path / "faces.json"
    report.write_text(json.dumps([{"faces": []}]))

    code = cli.main(["restore", str(picture), "-o", str(tmp_path / "out"), "--faces-from", str(report),
                     *offline(tmp_path)])  # fmt: skip

    assert code == 1
    assert error_lines(capsys) == [
        f"error: --faces-from {report}: expected an object mapping photo paths to their reports."
    ]


def test_several_face_fidelity_flags_are_merged_into_one_list_by_face(tmp_path):
    args = cli.build_parser().parse_args(
        [
            "restore",
            "photo.png",
            "-o",
            str(tmp_path),
            "--face-fidelity",
            "1=0.8",
            "--face-fidelity",
            "0=0.2,3=1",
        ]
    )

    options = cli.options_from(args)

    assert isinstance(options, RestoreOptions)
    assert options.face_fidelities == ((0, 0.2), (1, 0.8), (3, 1.0))


def test_exact_is_asked_for_by_a_flag_and_fast_mode_is_the_default(tmp_path):
    parser = cli.build_parser()

    default = cli.options_from(parser.parse_args(["restore", "photo.png", "-o", str(tmp_path)]))
    exact = cli.options_from(parser.parse_args(["colorize", "photo.png", "-o", str(tmp_path), "--exact"]))

    assert not default.exact and exact.exact and exact.task == "colorize"


def test_the_engine_options_of_both_command_lines_override_the_environments_settings(tmp_path):
    environment = Settings(fast_precision="bf16", backend="onnxruntime")
    given = ["--fast-precision", "fp16", "--backend", "torch", "--weights-dir", str(tmp_path)]
    for parser, argv in ((cli.build_parser(), ["restore", "p.png", "-o", str(tmp_path)]), (app.build_parser(), [])):
        settings = with_overrides(environment, parser.parse_args([*argv, *given]))
        assert (settings.fast_precision, settings.backend, settings.weights_dir) == ("fp16", "torch", tmp_path)
        assert with_overrides(environment, parser.parse_args(argv)) == environment  # nothing given, nothing changed
