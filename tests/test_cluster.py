"""An archive on Ray: photos and a video through actors on a local Ray instance that the tests start themselves
(2 CPUs, loopback only, shut down after), against the single-process command line on the same inputs.

The photos are twelve: two whole photos with one face each, restored by golden-filled CodeFormer weights, and ten
faceless pictures (only enlarged), plus a corrupt file between them. The planning of a job (input forms, outputs,
what is already done) and the actors it asks for are checked without Ray.
"""

import errno
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from codeformer_core import cli
from codeformer_core.cluster import job
from codeformer_core.cluster.archive import partial_path, plan_job
from codeformer_core.cluster.arguments import LOCAL, ActorPlan, check_address, plan_actors
from codeformer_core.errors import InvalidOptionError, WeightsError, WeightsUnavailableError

from .conftest import SAMPLES
from .test_video import audio_stream_count, decoded_frames, write_clip

NEEDS_RAY = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="Ray is an optional extra: pip install -r requirements-ray.txt"
)
# Exact float32: an actor runs on fewer threads than a single process, and oneDNN's sums depend on the thread count:
# in bf16 by many grey levels, in float32 by at most one (`same_pictures`).
CHEAP = ["--detector", "dlib", "--no-parse", "-s", "1", "--device", "cpu", "--exact"]
THREADS_GAP = 1
"""Grey levels a restored face may differ by between processes on different thread counts (float32 rounding)."""
FACES = ("03.jpg", "05.jpg")
CORRUPT = "06_cut_short.jpg"


def faceless_picture(index: int) -> np.ndarray:
    """A colour ramp, different for each index in size and colour: nothing a face detector could take for a face."""
    height, width = 60 + 4 * index, 90 + 6 * index
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, axis=0)
    return np.dstack([ramp, np.full_like(ramp, 20 * index), ramp[:, ::-1]]).astype(np.uint8)


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def weights(stand_in_weights) -> Path:
    return stand_in_weights("codeformer.pth")


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """Twelve photos, and a JPEG cut short sorted between them."""
    folder = tmp_path_factory.mktemp("archive")
    for name in FACES:
        shutil.copy(SAMPLES / "whole" / name, folder / name)
    for index in range(10):
        cv2.imwrite(str(folder / f"{10 + index}_{'plain.png' if index % 2 else 'plain.jpg'}"), faceless_picture(index))
    (folder / CORRUPT).write_bytes((SAMPLES / "whole" / "04.jpg").read_bytes()[:3000])
    return folder


@pytest.fixture(scope="module")
def archive_results(local_ray, archive, weights, tmp_path_factory):
    """The archive restored by the single-process command line and on Ray with two actors, with the exit codes,
    stderr and the Ray job's summary."""
    single, on_ray = tmp_path_factory.mktemp("single"), tmp_path_factory.mktemp("on-ray")
    summary = on_ray.parent / f"{on_ray.name}-summary.json"
    common = [str(archive), *CHEAP, "--weights-dir", str(weights)]
    single_code = cli.main(["restore", *common, "-o", str(single)])
    ray_code = cli.main(["restore", *common, "-o", str(on_ray), "--ray", "--actors", "2", "--json", str(summary)])
    codes = (single_code, ray_code)
    return {"single": single, "ray": on_ray, "codes": codes, "summary": json.loads(summary.read_text())}


def same_pictures(first: Path, second: Path) -> bool:
    """The same picture: equal files, or PNGs whose pixels differ by at most THREADS_GAP grey levels."""
    if first.read_bytes() == second.read_bytes():
        return True
    a, b = cv2.imread(str(first), cv2.IMREAD_UNCHANGED), cv2.imread(str(second), cv2.IMREAD_UNCHANGED)
    if a is None or b is None or a.shape != b.shape:
        return False
    return int(np.abs(a.astype(int) - b).max()) <= THREADS_GAP


@NEEDS_RAY
def test_twelve_photos_on_two_actors_equal_the_single_process_results_file_for_file(archive_results):
    single, on_ray, summary = archive_results["single"], archive_results["ray"], archive_results["summary"]

    names = sorted(path.name for path in single.iterdir())
    assert len(names) == 12 and sorted(path.name for path in on_ray.iterdir()) == names
    for name in names:
        assert same_pictures(on_ray / name, single / name), name
    assert cv2.imread(str(on_ray / "03.png")).shape[0] == 512  # enlarged to a shorter side of 512
    assert (summary["done"], summary["skipped"], summary["faces"], summary["actors"]) == (12, 0, 2, 2)
    assert len(summary["no_face"]) == 10


@NEEDS_RAY
def test_a_corrupt_photo_in_the_middle_is_reported_and_the_others_finish(archive_results, archive):
    summary = archive_results["summary"]

    assert archive_results["codes"] == (1, 1)
    (line,) = summary["failed"]
    assert line.startswith(f"{archive / CORRUPT}: ") and "truncated" in line and "\n" not in line
    assert not (archive_results["ray"] / "06_cut_short.png").exists()


@NEEDS_RAY
def test_a_rerun_after_a_kill_does_only_what_is_missing(archive_results, archive, weights, tmp_path):
    output = tmp_path / "out"
    shutil.copytree(archive_results["ray"], output)
    # What a kill leaves: outputs never written, a temporary file mid-write, and (from a tool that writes in place)
    # an output cut short.
    (output / "11_plain.png").unlink()
    (output / "12_plain.png").unlink()
    partial_path(output / "13_plain.png").write_bytes(b"\x89PNG half of it")
    (output / "14_plain.png").write_bytes((output / "14_plain.png").read_bytes()[:500])
    untouched = {path.name: path.stat().st_mtime_ns for path in output.iterdir() if not path.name.startswith(".")}
    del untouched["14_plain.png"]
    summary = tmp_path / "summary.json"

    code = cli.main(["restore", str(archive), *CHEAP, "--weights-dir", str(weights), "-o", str(output), "--ray",
                     "--actors", "2", "--json", str(summary)])  # fmt: skip

    report = json.loads(summary.read_text())
    assert code == 1  # the corrupt file still fails
    assert (report["done"], report["skipped"], report["leftovers_removed"]) == (3, 9, 1)
    assert sorted(path.name for path in output.iterdir()) == sorted(p.name for p in archive_results["single"].iterdir())
    for path in output.iterdir():
        assert same_pictures(path, archive_results["single"] / path.name), path.name
    assert {name: (output / name).stat().st_mtime_ns for name in untouched} == untouched


@NEEDS_RAY
def test_a_24_frame_video_split_over_two_actors_equals_the_single_process_video(local_ray, weights, tmp_path):
    # Small frames keep detection cheap (each is enlarged to a shorter side of 512 before its face is restored).
    size = (128, 72)
    frames = [cv2.resize(faceless_picture(index % 10), size) for index in range(24)]
    frames[14] = cv2.resize(cv2.imread(str(SAMPLES / "whole" / "03.jpg"))[:224], size, interpolation=cv2.INTER_AREA)
    clip = write_clip(tmp_path / "clip.mp4", frames, audio=True)
    summary = tmp_path / "summary.json"
    common = [str(clip), *CHEAP, "--weights-dir", str(weights)]

    single_code = cli.main(["restore", *common, "-o", str(tmp_path / "single")])
    ray_code = cli.main(["restore", *common, "-o", str(tmp_path / "ray"), "--ray", "--actors", "2",
                         "--chunk-frames", "6", "--json", str(summary)])  # fmt: skip

    assert (single_code, ray_code) == (0, 0)
    single, on_ray = decoded_frames(tmp_path / "single" / "clip.mp4"), decoded_frames(tmp_path / "ray" / "clip.mp4")
    assert len(on_ray) == len(single) == 24
    # Frames before the face are identical. The face frame may differ by float32 rounding (the actors sum with other
    # thread counts), which H.264 spreads over its blocks and into the frames predicted from it.
    gaps = [float(np.abs(a.astype(int) - b).mean()) for a, b in zip(on_ray, single, strict=True)]
    assert gaps[:14] == [0.0] * 14 and max(gaps) < 2.0, gaps
    assert audio_stream_count(tmp_path / "ray" / "clip.mp4") == 1
    report = json.loads(summary.read_text())
    assert (report["done"], report["frames"], report["faces"]) == (1, 24, 1)


def test_without_ray_the_command_line_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where it is not installed

    code = cli.main(["restore", str(tmp_path), "-o", str(tmp_path / "out"), "--ray"])

    assert code == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert "requirements-ray.txt" in line


def test_inputs_come_as_folders_globs_and_list_files_and_outputs_keep_the_cli_names(tmp_path):
    photos, more, out = tmp_path / "photos", tmp_path / "more" / "deeper", tmp_path / "out"
    for folder in (photos, more, out):
        folder.mkdir(parents=True)
    for path in (photos / "a.jpg", photos / "b.png", photos / "clip.mov", more / "c.JPG", more / "notes.txt"):
        path.write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_text("# scans to redo\nmore/deeper/c.JPG\n\nphotos/a.jpg\nmissing.png\n")
    cv2.imwrite(str(out / "b.png"), faceless_picture(0))  # complete: skipped
    (out / "a.png").write_bytes(cv2.imencode(".png", faceless_picture(1))[1].tobytes()[:-12])  # cut short: redone

    plan = plan_job([photos, Path(str(tmp_path / "more" / "**" / "*")), listing], out)

    assert plan.photos == [(photos / "a.jpg", out / "a.png"), (more / "c.JPG", out / "c.png")]
    assert plan.videos == [(photos / "clip.mov", out / "clip.mp4")]
    assert plan.skipped == [photos / "b.png"]
    assert plan.errors == [f"{tmp_path / 'missing.png'}: no such file or folder"]


@NEEDS_RAY
def test_a_result_or_report_that_cannot_be_written_is_a_line_and_the_job_goes_on(
    local_ray, weights, tmp_path, monkeypatch, capsys
):
    photos, output, summary = tmp_path / "photos", tmp_path / "out", tmp_path / "summary.json"
    photos.mkdir()
    for index in range(2):
        cv2.imwrite(str(photos / f"{index}.png"), faceless_picture(index))
    write = job.write_atomically

    def disk_full_for_the_first(destination, data):
        if destination.name == "0.png":
            raise OSError(errno.ENOSPC, "No space left on device")
        write(destination, data)

    monkeypatch.setattr(job, "write_atomically", disk_full_for_the_first)
    (tmp_path / ".summary.json.partial").mkdir()  # where the summary is written before its rename

    code = cli.main(["restore", str(photos), *CHEAP, "--weights-dir", str(weights), "-o", str(output), "--ray",
                     "--actors", "1", "--json", str(summary)])  # fmt: skip

    assert code == 1
    assert sorted(path.name for path in output.iterdir()) == ["1.png"]
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {photos / '0.png'}: the result could not be written to {output / '0.png'} (No space left on device)",
        f"error: --json {summary}: the report could not be written (Is a directory).",
    ]


@NEEDS_RAY
def test_an_empty_folder_is_an_error_line_and_exit_code_1(local_ray, tmp_path, capsys):
    (tmp_path / "empty").mkdir()

    code = cli.main(["restore", str(tmp_path / "empty"), "-o", str(tmp_path / "out"), "--ray"])

    assert code == 1
    assert f"error: no images or videos found in {tmp_path / 'empty'}" in capsys.readouterr().err


def test_two_inputs_for_one_output_and_an_output_over_its_input_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    for path in (tmp_path / "a" / "face.jpg", tmp_path / "face.png"):
        path.write_bytes(b"x")

    with pytest.raises(InvalidOptionError, match=r"face.jpg and .*face.png would both be written as .*face.png"):
        plan_job([tmp_path / "a", tmp_path / "face.png"], tmp_path / "out")
    with pytest.raises(InvalidOptionError, match=r"face.png would be overwritten by its own result"):
        plan_job([tmp_path / "face.png"], tmp_path)


@pytest.mark.parametrize(
    ("resources", "actors", "device", "plan"),
    [
        ({"CPU": 16, "GPU": 4}, None, None, ActorPlan(4, gpus=1, cpus=1, device="cuda")),
        ({"CPU": 16, "GPU": 4}, None, "cpu", ActorPlan(8, gpus=0, cpus=2, device="cpu")),
        ({"CPU": 2}, 1, None, ActorPlan(1, gpus=0, cpus=2, device="cpu")),
    ],
    ids=["one actor per GPU", "CPU actors on request", "as asked"],
)
def test_actors_are_one_per_gpu_else_cpu_shares(resources, actors, device, plan):
    assert plan_actors(resources, actors, 2, device) == plan


def test_more_actors_than_the_cluster_holds_are_refused():
    with pytest.raises(InvalidOptionError, match=r"--actors 3: the Ray cluster has 2 GPU\(s\)"):
        plan_actors({"CPU": 8, "GPU": 2}, 3, 1, None)
    with pytest.raises(InvalidOptionError, match=r"needs 6 CPUs; the Ray cluster has 4"):
        plan_actors({"CPU": 4}, 3, 2, None)
    with pytest.raises(InvalidOptionError, match="has no GPU"):
        plan_actors({"CPU": 4}, None, 1, "cuda")


@pytest.mark.parametrize("address", [LOCAL, "auto", "10.0.0.5:6379", "head:6379"])
def test_a_local_instance_auto_and_a_heads_host_port_are_accepted(address):
    assert check_address(address) == address


def test_a_ray_client_address_and_an_input_name_are_refused_in_one_line():
    with pytest.raises(
        InvalidOptionError,
        match=r"^--ray ray://head:10001: Ray Client addresses are not supported,"
        r" .* run it on a node of the cluster with --ray auto\.$",
    ):
        check_address("ray://head:10001")
    with pytest.raises(
        InvalidOptionError,
        match=r"^--ray takes auto or a head's HOST:PORT; got 'group.jpg' \(an input\?"
        r" put --ray after the inputs, or write --ray=auto\)\.$",
    ):
        check_address("group.jpg")


def test_an_engine_error_from_an_actor_is_raised_again_as_itself_with_its_own_line():
    class RemoteWeightsError(WeightsError):  # what Ray raises here: the cause's class, a remote traceback as message
        def __init__(self, cause):
            super().__init__(f"ray::PhotoWorker.__call__() (pid=4242)\n  File \"workers.py\", line 80\n{cause}")
            self.cause = cause

    cause = WeightsUnavailableError("codeformer.pth could not be downloaded: the Hub is unreachable")
    with pytest.raises(WeightsUnavailableError) as raised, job._unwrapped_engine_errors():
        raise RemoteWeightsError(cause)
    assert str(raised.value) == "codeformer.pth could not be downloaded: the Hub is unreachable"

    local = InvalidOptionError("--chunk-frames must be at least 1; got 0")
    with pytest.raises(InvalidOptionError) as raised, job._unwrapped_engine_errors():
        raise local
    assert raised.value is local  # raised in this process: left as it is
