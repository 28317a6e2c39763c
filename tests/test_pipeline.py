"""The whole data path on real samples with stand-in weights: every task, whole photos and aligned faces.

CodeFormer runs with golden-filled weights (its real architecture and cost); the parser has random weights, so
paste masks are arbitrary but real; faces are found with dlib, the one detector with real weights here.
"""

import dataclasses
import json
import threading
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from codeformer_core import cli
from codeformer_core.errors import DeviceError
from codeformer_core.faces.alignment import FFHQ_TEMPLATE_512, estimate_alignment, inverse_affine
from codeformer_core.faces.detection import DetectedFace
from codeformer_core.images import read_image, read_image_array
from codeformer_core.options import RestoreOptions
from codeformer_core.pipeline import Pipeline, RestoreRequest
from codeformer_core.weights import WeightStore

from .conftest import SAMPLES

WHOLE_PHOTO_FILES = ("codeformer.pth", "codeformer_inpainting.pth", "parsing_parsenet.pth")
ALIGNED_FILES = ("codeformer.pth", "codeformer_colorization.pth", "codeformer_inpainting.pth")


@pytest.fixture(scope="module")
def pipeline(stand_in_weights) -> Pipeline:
    return Pipeline(WeightStore(stand_in_weights(*sorted(set(WHOLE_PHOTO_FILES + ALIGNED_FILES)))), device="cpu")


@pytest.fixture(scope="module")
def one_face_photo():
    return read_image(SAMPLES / "whole" / "03.jpg")


@pytest.fixture(scope="module")
def restored_whole(pipeline, one_face_photo):
    options = RestoreOptions(detector="dlib", upscale=2, fidelity=0.5)
    return pipeline.run(RestoreRequest(one_face_photo, options))


def face_square(report_face, scale: float = 1) -> tuple[slice, slice]:
    x1, y1, x2, y2 = (int(round(v * scale)) for v in report_face.box)
    return slice(y1, y2), slice(x1, x2)


def enlarged_as_official(bgr: np.ndarray) -> tuple[np.ndarray, float]:
    """The official helper's working image: a shorter side below 512 enlarged to 512, and the factor."""
    factor = max(1.0, 512.0 / min(bgr.shape[:2]))
    return cv2.resize(bgr, (0, 0), fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR), factor


def test_whole_photo_restore_pastes_the_face_back_and_leaves_the_rest(restored_whole, one_face_photo):
    working, factor = enlarged_as_official(one_face_photo.bgr)
    height, width = working.shape[:2]
    result = restored_whole
    assert result.image.shape == (2 * height, 2 * width, 3) == (1024, 1820, 3)
    assert len(result.report.faces) == 1 and result.report.faces_restored == 1
    assert len(result.faces) == 1 and result.faces[0].shape == (512, 512, 3)
    assert {"detect", "align", "encode", "decode", "parse", "paste"} <= set(result.report.timings)

    upscaled = cv2.resize(working, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
    rows, cols = face_square(result.report.faces[0], scale=2 * factor)
    inside = np.abs(result.image[rows, cols].astype(int) - upscaled[rows, cols].astype(int))
    assert inside.mean() > 5, "the face region should hold the network's face"
    # Outside the aligned crop's footprint (the crop square carried back into the output) no pixel may change.
    landmarks = np.array(result.report.faces[0].landmarks) * factor
    to_output = inverse_affine(estimate_alignment(landmarks), 2)
    footprint = cv2.warpAffine(np.ones((512, 512), np.uint8), to_output, (2 * width, 2 * height))
    footprint = cv2.dilate(footprint, np.ones((5, 5), np.uint8)) > 0
    assert footprint.mean() < 0.6
    assert np.array_equal(result.image[~footprint], upscaled[~footprint])


def test_a_new_fidelity_reuses_detection_encoding_and_masks(pipeline, one_face_photo, restored_whole):
    again = pipeline.run(RestoreRequest(one_face_photo, RestoreOptions(detector="dlib", upscale=2, fidelity=1.0)))

    assert {"detect", "encode", "parse", "background"}.isdisjoint(again.report.timings)
    assert {"decode", "paste"} <= set(again.report.timings)
    assert {"face detection and alignment", "encoded faces"} <= set(again.report.reused)
    assert "paste masks" in again.report.reused and "paste blends" in again.report.reused
    assert "Reused from the previous run" in again.report.summary()
    assert not np.array_equal(again.faces[0], restored_whole.faces[0]), "w=1 and w=0.5 must differ"


def test_aligned_colorize_adds_colour_to_a_gray_face(pipeline):
    gray = read_image(SAMPLES / "gray" / "Hepburn02.png")
    assert gray.is_gray

    result = pipeline.run(RestoreRequest(gray, RestoreOptions(task="colorize", aligned=True)))

    assert result.image.shape == (512, 512, 3)
    spread = np.abs(result.image[..., 0].astype(int) - result.image[..., 2].astype(int)).mean()
    assert spread > 1, "the colorization network's output should not be gray"
    assert result.report.fidelity == 0.0


def test_restore_keeps_a_sepia_faces_tint(pipeline):
    # A uniform colour cast is grey to the official test (it measures the variance of channel differences), and
    # the official code matches each restored channel to the input's, so the tint survives the grey conversion.
    gray = cv2.imread(str(SAMPLES / "gray" / "Hepburn02.png"))
    sepia = np.clip(gray.astype(int) + [-14, -4, 10], 0, 255).astype(np.uint8)
    image = read_image(cv2.imencode(".png", sepia)[1].tobytes())
    assert image.is_gray

    result = pipeline.run(RestoreRequest(image, RestoreOptions(aligned=True, fidelity=0.5)))

    output = result.image.astype(int)
    unclipped = np.all((output > 0) & (output < 255), axis=2)
    assert unclipped.mean() > 0.5
    tint = sepia[..., 2].mean() - sepia[..., 0].mean()  # red minus blue, ~24 levels
    assert np.abs(output[..., 2] - output[..., 0] - tint)[unclipped].max() <= 3


def test_restore_keeps_a_gray_rgba_faces_tone_and_its_alpha(pipeline):
    rgba = read_image(SAMPLES / "gray" / "Einstein02.png")
    assert rgba.alpha is not None and rgba.is_gray

    result = pipeline.run(RestoreRequest(rgba, RestoreOptions(aligned=True, fidelity=0.7)))

    assert result.image.shape == (512, 512, 4)
    assert np.array_equal(result.image[..., 3], rgba.alpha)
    # Its channels differ by at most 2 levels, so the matched output's differ by at most one.
    assert np.abs(result.image[..., 0].astype(int) - result.image[..., 2].astype(int)).max() <= 1


def test_aligned_inpaint_changes_only_the_white_strokes(pipeline):
    masked = read_image(SAMPLES / "masked" / "00108.png")
    holes = np.all(masked.bgr == 255, axis=2)
    assert holes.any()

    result = pipeline.run(RestoreRequest(masked, RestoreOptions(task="inpaint", aligned=True)))

    assert np.array_equal(result.image[~holes], masked.bgr[~holes])
    assert np.any(result.image[holes] != 255)
    assert result.report.fidelity == 1.0


def test_whole_photo_inpaint_with_a_separate_mask_changes_only_the_mask(pipeline, one_face_photo, restored_whole):
    rows, cols = face_square(restored_whole.report.faces[0])
    mask = np.zeros(one_face_photo.bgr.shape[:2], np.float32)
    centre_rows = slice(rows.start + (rows.stop - rows.start) // 3, rows.stop - (rows.stop - rows.start) // 3)
    centre_cols = slice(cols.start + (cols.stop - cols.start) // 3, cols.stop - (cols.stop - cols.start) // 3)
    mask[centre_rows, centre_cols] = 1.0

    options = RestoreOptions(task="inpaint", detector="dlib", upscale=1, parse_paste=False)
    result = pipeline.run(RestoreRequest(one_face_photo, options, mask=mask))

    working, _ = enlarged_as_official(one_face_photo.bgr)
    holes = cv2.resize(mask, working.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 0
    assert result.image.shape == working.shape
    assert np.array_equal(result.image[~holes], working[~holes])
    assert np.any(result.image[holes] != working[holes])


def test_a_photo_without_faces_is_upscaled_and_says_so(tmp_path):
    gradient = np.tile(np.linspace(0, 255, 96, dtype=np.uint8), (64, 1))
    image = read_image(cv2.imencode(".png", cv2.merge([gradient] * 3))[1].tobytes())
    pipeline = Pipeline(WeightStore(tmp_path / "empty"), device="cpu")

    result = pipeline.run(RestoreRequest(image, RestoreOptions(detector="dlib", upscale=3)))

    assert result.image.shape == (3 * 512, 3 * 768, 3)  # enlarged to a shorter side of 512 first, as officially
    assert result.faces == [] and result.report.faces == []
    assert any("No face was found" in notice for notice in result.report.notices)


def test_the_cli_writes_the_report_as_json(tmp_path):
    photo = tmp_path / "landscape.png"
    cv2.imwrite(str(photo), np.full((80, 120, 3), 90, np.uint8))
    report_path = tmp_path / "report.json"

    code = cli.main([
        "restore", str(photo), "-o", str(tmp_path / "out"), "--detector", "dlib", "--upscale", "1",
        "--weights-dir", str(tmp_path / "empty"), "--json", str(report_path),
    ])

    assert code == 0
    assert (tmp_path / "out" / "landscape.png").is_file()
    report = json.loads(report_path.read_text())[str(photo)]
    assert report["faces"] == [] and report["output_size"] == [768, 512]
    assert "detect" in report["timings"]


def test_small_photos_are_enlarged_to_a_shorter_side_of_512_as_officially(tmp_path):
    pipeline = Pipeline(WeightStore(tmp_path / "empty"), device="cpu")
    sizes = {}
    for width, height in ((225, 225), (1000, 800), (300, 200)):
        image = read_image_array(np.full((height, width, 3), 120, np.uint8))
        result = pipeline.run(RestoreRequest(image, RestoreOptions(upscale=2), faces=[]))
        sizes[width, height] = result.report.output_size
    assert sizes == {(225, 225): (1024, 1024), (1000, 800): (2000, 1600), (300, 200): (1536, 1024)}
    assert any("enlarged to 768x512" in line for line in result.report.adjustments)


def test_a_small_photos_face_is_restored_at_the_enlarged_size(pipeline):
    photo = read_image(SAMPLES / "whole" / "04.jpg")  # 225 x 225, one face

    result = pipeline.run(RestoreRequest(photo, RestoreOptions(detector="dlib", upscale=2, parse_paste=False)))

    assert result.image.shape == (1024, 1024, 3) and result.report.faces_restored == 1
    # Landmarks are reported in the input's pixels, whatever size the pipeline worked at.
    (face,) = result.report.faces
    assert 0 <= min(face.box) and max(face.box) <= 225


def test_the_cli_takes_the_faces_from_an_earlier_report(tmp_path, restored_whole, stand_in_weights):
    photo = SAMPLES / "whole" / "03.jpg"
    earlier = tmp_path / "earlier.json"
    faces = [dataclasses.asdict(face) for face in restored_whole.report.faces]
    earlier.write_text(json.dumps({"elsewhere/03.jpg": {"faces": faces}}))  # matched by file name
    report_path = tmp_path / "report.json"

    code = cli.main([
        "restore", str(photo), "-o", str(tmp_path / "out"), "--upscale", "1", "--no-parse", "--faces-from",
        str(earlier), "--weights-dir", str(stand_in_weights("codeformer.pth")), "--json", str(report_path),
    ])

    assert code == 0
    report = json.loads(report_path.read_text())[str(photo)]
    assert report["faces_restored"] == 1
    assert np.allclose(report["faces"][0]["landmarks"], faces[0]["landmarks"], atol=0.051)
    assert "load detector" not in report["timings"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not a readable JSON report"),
        ('{"03.jpg": {"faces": [{"box": [1, 2, 3]}]}}', "face 0 needs a 'box' of 4 numbers"),
        ('{"other.jpg": {"faces": []}}', "lists no faces for 03.jpg"),
    ],
)
def test_the_cli_refuses_a_bad_faces_report_in_one_line(tmp_path, capsys, content, message):
    earlier = tmp_path / "earlier.json"
    earlier.write_text(content)

    code = cli.main([
        "restore", str(SAMPLES / "whole" / "03.jpg"), "-o", str(tmp_path / "out"), "--faces-from", str(earlier),
        "--weights-dir", str(tmp_path / "empty"),
    ])

    errors = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(errors) == 1 and message in errors[0]


class GridDetector:
    """Stands in for a detector on a crowd photo: 60 faces, the one at index 2 larger than the rest."""

    def detect(self, image):
        faces = []
        for index in range(60):
            scale = 0.2 if index == 2 else 0.1
            offset = np.array([(index % 10) * 60.0, (index // 10) * 60.0], np.float32)
            landmarks = (FFHQ_TEMPLATE_512 * scale + offset).astype(np.float32)
            box = np.array([*offset, *(offset + 512 * scale)], np.float32)
            faces.append(DetectedFace(box=box, landmarks=landmarks, score=0.99))
        return faces


def test_a_crowd_is_capped_to_the_largest_faces_with_a_message(stand_in_weights, one_face_photo, monkeypatch):
    pipeline = Pipeline(WeightStore(stand_in_weights("codeformer.pth")), device="cpu", max_faces=1)
    monkeypatch.setattr(pipeline.models, "detector", lambda *args, **kwargs: GridDetector())

    result = pipeline.run(RestoreRequest(one_face_photo, RestoreOptions(upscale=1, parse_paste=False)))

    assert len(result.faces) == 1 and result.report.faces_restored == 1
    assert result.report.faces[0].box[:2] == [120.0, 0.0]  # the larger face, index 2
    assert "60 faces were found; the 1 largest were processed (limit 1)." in result.report.adjustments


def test_each_network_stage_runs_on_a_thread_that_ends_with_it(stand_in_weights, one_face_photo, monkeypatch):
    # NNPACK's workspace lives as long as the thread that ran it: no stage may leave one with the caller's thread.
    pipeline = Pipeline(WeightStore(stand_in_weights("codeformer.pth")), device="cpu", max_faces=1)
    stage_threads = {}

    def stage(name: str, result: object):
        def run(*args: object, **kwargs: object) -> object:
            stage_threads[name] = threading.current_thread()
            return result

        return run

    face = np.full((512, 512, 3), 128, np.uint8)
    masks = np.ones((1, 512, 512), np.float32)
    monkeypatch.setattr(pipeline.models, "detector", lambda *args, **kwargs: GridDetector())
    monkeypatch.setattr("codeformer_core.pipeline.face_stage.encode_faces", stage("encode", ["encoded face"]))
    monkeypatch.setattr("codeformer_core.pipeline.decode_stage.decode_faces", stage("decode", [face]))
    parser = SimpleNamespace(paste_masks=stage("parse", masks))
    monkeypatch.setattr(pipeline.models, "parser", lambda *args, **kwargs: parser)

    result = pipeline.run(RestoreRequest(one_face_photo, RestoreOptions(upscale=1)))

    assert result.report.faces_restored == 1
    assert sorted(stage_threads) == ["decode", "encode", "parse"]
    assert len(set(stage_threads.values())) == 3
    assert all(thread is not threading.current_thread() for thread in stage_threads.values())
    assert not any(thread.is_alive() for thread in stage_threads.values())


def test_out_of_device_memory_is_retried_with_half_the_batch_down_to_one_then_reported(
    stand_in_weights, one_face_photo, monkeypatch
):
    pipeline = Pipeline(WeightStore(stand_in_weights("codeformer.pth")), device="cpu", max_faces=4)
    monkeypatch.setattr(pipeline.models, "detector", lambda *args, **kwargs: GridDetector())
    monkeypatch.setattr("codeformer_core.pipeline.device_runs.batch_size_for", lambda device: 16)  # a large GPU
    batches_tried = []

    def encode(net, crops, *, adain, batch):
        batches_tried.append(batch)
        if batch > 1:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return ["encoded face"] * len(crops)

    face = np.full((512, 512, 3), 128, np.uint8)
    monkeypatch.setattr("codeformer_core.pipeline.face_stage.encode_faces", encode)
    decode = lambda net, encoded, **_: [face] * len(encoded)  # noqa: E731
    monkeypatch.setattr("codeformer_core.pipeline.decode_stage.decode_faces", decode)

    result = pipeline.run(RestoreRequest(one_face_photo, RestoreOptions(upscale=1, parse_paste=False)))

    assert batches_tried == [16, 8, 4, 2, 1] and result.report.faces_restored == 4

    def always_out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr("codeformer_core.pipeline.face_stage.encode_faces", always_out_of_memory)
    with pytest.raises(DeviceError, match="ran out of memory"):
        pipeline.run(RestoreRequest(read_image(SAMPLES / "aligned" / "0240.png"), RestoreOptions(aligned=True)))


def test_the_face_parser_is_retried_with_fewer_faces_per_pass_after_running_out_of_memory(
    stand_in_weights, one_face_photo, monkeypatch
):
    weights = stand_in_weights("codeformer.pth", "parsing_parsenet.pth")
    pipeline = Pipeline(WeightStore(weights), device="cpu", max_faces=3)
    monkeypatch.setattr(pipeline.models, "detector", lambda *args, **kwargs: GridDetector())
    monkeypatch.setattr("codeformer_core.pipeline.device_runs.batch_size_for", lambda device: 4)  # a GPU
    face = np.full((512, 512, 3), 128, np.uint8)
    monkeypatch.setattr(pipeline._faces, "encode", lambda state, prepared, indices: None)  # not the point here
    monkeypatch.setattr(pipeline._decoder, "finished_faces", lambda state, prepared, wanted: [face] * len(wanted))
    parser = pipeline.models.parser()
    passes = []
    original = parser.network.forward

    def forward(pixels):
        passes.append(len(pixels))
        if len(pixels) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return original(pixels)

    monkeypatch.setattr(parser.network, "forward", forward)

    result = pipeline.run(RestoreRequest(one_face_photo, RestoreOptions(upscale=1)))

    assert passes == [3, 2, 1, 1, 1] and result.report.faces_restored == 3
