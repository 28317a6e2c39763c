"""Face by face: a face left out keeps its pixels, a face at its own w equals a run at that w, and the fidelity sweep
encodes once. Re-renders count the network's calls: only the faces whose w changed may reach the decoder.

Two faces of the 4-face group photo (found by dlib once, then given) keep the network runs few; CodeFormer has the
golden fill and the parser random weights, as in test_pipeline.
"""

import json
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from codeformer_core import cli
from codeformer_core.errors import InvalidOptionError
from codeformer_core.faces.alignment import estimate_alignment, inverse_affine
from codeformer_core.images import read_image
from codeformer_core.network import CodeFormer, EncodedFaces
from codeformer_core.options import RestoreOptions, parse_face_fidelities, parse_face_indices
from codeformer_core.pipeline import SWEEP_FIDELITIES, Pipeline, RestoreRequest
from codeformer_core.pipeline.cache import FinishedFaces, PreparedFaces
from codeformer_core.report import FidelitySweep
from codeformer_core.video import restore_video
from codeformer_core.weights import WeightStore

from .conftest import SAMPLES
from .test_pipeline import enlarged_as_official

FILES = ("codeformer.pth", "parsing_parsenet.pth")
OPTIONS = RestoreOptions(detector="dlib", upscale=1, fidelity=0.5)


@pytest.fixture(scope="module")
def pipeline(stand_in_weights) -> Pipeline:
    return Pipeline(WeightStore(stand_in_weights(*FILES)), device="cpu")


@pytest.fixture(scope="module")
def group_photo():
    return read_image(SAMPLES / "whole" / "00.jpg")


@pytest.fixture(scope="module")
def two_faces(pipeline, group_photo):
    """The first two of the photo's four faces, in input pixels."""
    found = pipeline.models.detector("dlib").detect(group_photo.bgr)
    assert len(found) == 4
    return found[:2]


@pytest.fixture(scope="module")
def everyone(pipeline, group_photo, two_faces):
    """Both faces at w=0.5, paste masks parsed."""
    return pipeline.run(RestoreRequest(group_photo, OPTIONS, faces=two_faces))


@pytest.fixture
def network_calls(monkeypatch) -> list[tuple]:
    """("encode", faces) and ("decode", faces, w) for each network pass during the test."""
    calls: list[tuple] = []
    encode, decode = CodeFormer.encode, CodeFormer.decode

    def counted_encode(net, x, *args, **kwargs):
        calls.append(("encode", x.shape[0]))
        return encode(net, x, *args, **kwargs)

    def counted_decode(net, encoded, w, *args, **kwargs):
        calls.append(("decode", len(encoded), w))
        return decode(net, encoded, w, *args, **kwargs)

    monkeypatch.setattr(CodeFormer, "encode", counted_encode)
    monkeypatch.setattr(CodeFormer, "decode", counted_decode)
    return calls


def footprint(face, factor: float, shape: tuple[int, ...]) -> np.ndarray:
    """Output pixels the face's 512 crop square can reach when pasted (upscale 1), one pixel of margin."""
    to_output = inverse_affine(estimate_alignment(np.array(face.landmarks) * factor), 1)
    square = cv2.warpAffine(np.ones((512, 512), np.uint8), to_output, (shape[1], shape[0]))
    return cv2.dilate(square, np.ones((5, 5), np.uint8)) > 0


def test_a_face_left_out_keeps_its_original_pixels_and_costs_one_paste(
    pipeline, group_photo, two_faces, everyone, network_calls
):
    left_out = pipeline.run(RestoreRequest(group_photo, replace(OPTIONS, skip_faces=(1,)), faces=two_faces))

    background, factor = enlarged_as_official(group_photo.bgr)
    first, second = (footprint(face, factor, background.shape) for face in everyone.report.faces)
    assert not (first & second).any()
    # Face 1 is the background's exactly: nothing changed outside face 0's reach, and face 0 is pasted as before.
    assert np.array_equal(left_out.image[~first], background[~first])
    assert np.array_equal(left_out.image[first], everyone.image[first])
    assert np.any(everyone.image[second] != background[second])
    assert network_calls == [] and set(left_out.report.timings) == {"paste"}
    assert [(face.restored, face.fidelity) for face in left_out.report.faces] == [(True, 0.5), (False, None)]
    assert "Face by face: 0: w=0.5; 1: kept original." in left_out.report.summary()
    assert "decoded face 0" in left_out.report.reused
    assert np.array_equal(left_out.faces[0], everyone.faces[0])
    assert not np.array_equal(left_out.faces[1], everyone.faces[1])  # the crop as cut from the photo

    back_in = pipeline.run(RestoreRequest(group_photo, OPTIONS, faces=two_faces))

    assert np.array_equal(back_in.image, everyone.image)
    assert network_calls == [] and set(back_in.report.timings) == {"paste"}


def test_faces_at_their_own_w_equal_separate_runs_at_those_w(
    pipeline, stand_in_weights, group_photo, two_faces, everyone, network_calls
):
    mixed = pipeline.run(RestoreRequest(group_photo, replace(OPTIONS, face_fidelities={1: 0.9}), faces=two_faces))

    assert network_calls == [("decode", 1, 0.9)], "only the face whose w changed is decoded"
    assert [face.fidelity for face in mixed.report.faces] == [0.5, 0.9]
    assert "paste masks" in mixed.report.reused and "parse" not in mixed.report.timings
    # The same faces from runs at one w each, on a pipeline that has kept nothing of this photo.
    separate = Pipeline(WeightStore(stand_in_weights(*FILES)), device="cpu")
    plain = replace(OPTIONS, parse_paste=False)  # the faces, not their paste, are compared
    at_half = separate.run(RestoreRequest(group_photo, replace(plain, only_faces=(0,)), faces=two_faces))
    at_point_nine = separate.run(
        RestoreRequest(group_photo, replace(plain, fidelity=0.9, only_faces=(1,)), faces=two_faces)
    )
    assert np.array_equal(mixed.faces[0], at_half.faces[0])
    assert np.array_equal(mixed.faces[1], at_point_nine.faces[1])
    assert not np.array_equal(mixed.faces[1], everyone.faces[1])
    # Only the faces a run restores are encoded.
    assert [call for call in network_calls if call[0] == "encode"] == [("encode", 1), ("encode", 1)]


def test_the_sweep_encodes_once_and_each_face_equals_a_run_at_that_w(stand_in_weights, network_calls):
    face = read_image(SAMPLES / "aligned" / "0240.png")
    options = RestoreOptions(aligned=True, fidelity=0.5)
    sweeper = Pipeline(WeightStore(stand_in_weights("codeformer.pth")), device="cpu")

    sweep = sweeper.fidelity_sweep(RestoreRequest(face, options))

    assert sweep.fidelities == SWEEP_FIDELITIES and len(sweep.faces) == 5
    assert network_calls == [("encode", 1)] + [("decode", 1, w) for w in SWEEP_FIDELITIES]
    picked = sweeper.run(RestoreRequest(face, replace(options, fidelity=0.75)))
    assert len(network_calls) == 6, "picking a swept w decodes nothing"
    assert np.array_equal(picked.image, sweep.faces[3])
    separate = Pipeline(WeightStore(stand_in_weights("codeformer.pth")), device="cpu")
    for w, swept in zip(SWEEP_FIDELITIES, sweep.faces, strict=True):
        assert np.array_equal(separate.run(RestoreRequest(face, replace(options, fidelity=w))).image, swept), f"w={w}"


def test_the_cli_restores_only_the_faces_asked_at_their_w(tmp_path, everyone, stand_in_weights):
    earlier = tmp_path / "faces.json"
    earlier.write_text(json.dumps({"00.jpg": everyone.report.to_dict()}))
    report_path = tmp_path / "report.json"
    photo = SAMPLES / "whole" / "00.jpg"

    code = cli.main([
        "restore", str(photo), "-o", str(tmp_path / "out"), "-s", "1", "--no-parse", "--faces-from", str(earlier),
        "--faces", "1", "--face-fidelity", "1=0.8", "--weights-dir", str(stand_in_weights("codeformer.pth")),
        "--json", str(report_path),
    ])

    assert code == 0
    report = json.loads(report_path.read_text())[str(photo)]
    assert [(face["restored"], face["fidelity"]) for face in report["faces"]] == [(False, None), (True, 0.8)]
    assert report["faces_restored"] == 1
    output = cv2.imread(str(tmp_path / "out" / "00.png"))
    background, factor = enlarged_as_official(read_image(photo).bgr)
    reach = footprint(everyone.report.faces[1], factor, background.shape)
    assert np.array_equal(output[~reach], background[~reach])
    assert np.any(output[reach] != background[reach])


def test_a_face_the_image_lacks_is_refused_in_one_line_before_any_network(tmp_path, capsys, network_calls):
    pipeline = Pipeline(WeightStore(tmp_path / "empty"), device="cpu")
    face = read_image(SAMPLES / "aligned" / "0240.png")

    only_one = r"^There is no face 3: this image has 1 face\(s\); its one face is face 0\.$"
    with pytest.raises(InvalidOptionError, match=only_one):
        pipeline.run(RestoreRequest(face, RestoreOptions(aligned=True, face_fidelities={3: 0.2})))
    with pytest.raises(InvalidOptionError, match="There is no face 1"):
        pipeline.fidelity_sweep(RestoreRequest(face, RestoreOptions(aligned=True)), face_index=1)

    code = cli.main([
        "restore", str(SAMPLES / "whole" / "03.jpg"), "-o", str(tmp_path / "out"), "--detector", "dlib",
        "--faces", "0,5", "--weights-dir", str(tmp_path / "empty"),
    ])
    errors = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(errors) == 1 and "There is no face 5: this image has 1 face(s)" in errors[0]
    assert network_calls == []


def test_a_face_left_out_of_an_aligned_input_returns_the_input(tmp_path):
    pipeline = Pipeline(WeightStore(tmp_path / "empty"), device="cpu")
    face = read_image(SAMPLES / "aligned" / "0240.png")

    result = pipeline.run(RestoreRequest(face, RestoreOptions(aligned=True, skip_faces=[0])))

    assert np.array_equal(result.image, face.bgr) and result.report.faces_restored == 0


def test_a_video_refuses_face_choices_its_frames_could_not_keep(tmp_path):
    pipeline = Pipeline(WeightStore(tmp_path / "empty"), device="cpu")

    with pytest.raises(InvalidOptionError, match="^Face-by-face choices apply to photos"):
        restore_video(tmp_path / "clip.mp4", tmp_path / "out.mp4", pipeline, RestoreOptions(skip_faces=(0,)))


def test_face_choices_are_normalised_and_checked_where_they_are_made():
    chosen = RestoreOptions(only_faces=[3, 1, 3], face_fidelities={2: 0.8, 0: 1})
    assert chosen.only_faces == (1, 3) and chosen.face_fidelities == ((0, 1.0), (2, 0.8))
    assert chosen == RestoreOptions(only_faces=(1, 3), face_fidelities=[(2, 0.8), (0, 1.0)])
    assert hash(chosen) == hash(RestoreOptions(only_faces=(3, 1), face_fidelities={0: 1.0, 2: 0.8}))
    assert chosen.face_fidelity_plan(4) == [None, 0.5, None, 0.5]
    assert RestoreOptions(skip_faces=(1,), face_fidelities={0: 0.2}).face_fidelity_plan(3) == [0.2, None, 0.5]

    refusals = {
        "the fidelity of face 1 must be a number between 0 and 1; got 2": dict(face_fidelities={1: 2}),
        "face_fidelities gives one face two values": dict(face_fidelities=[(1, 0.2), (1, 0.3)]),
        "skip_faces must hold face indices (whole numbers from 0); got [-1]": dict(skip_faces=[-1]),
        "Per-face fidelities apply to restore only: colorize always runs at w=0.": dict(
            task="colorize", face_fidelities={0: 0.3}
        ),
    }
    for message, choices in refusals.items():
        with pytest.raises(InvalidOptionError) as caught:
            RestoreOptions(**choices)
        assert str(caught.value).startswith(message)


def test_face_lists_and_fidelities_are_read_from_text_with_one_line_errors():
    assert parse_face_indices(" 0, 1,3 ") == (0, 1, 3) and parse_face_indices("") == ()
    assert parse_face_fidelities("1=0.8, 3=0") == ((1, 0.8), (3, 0.0))
    for text, message in [("1", "expected FACE=W such as 1=0.8"), ("a=1", "got 'a'"), ("1=x", "not a number")]:
        with pytest.raises(InvalidOptionError, match=message):
            parse_face_fidelities(text)
    with pytest.raises(InvalidOptionError, match="got 'one'"):
        parse_face_indices("0,one")


def test_finished_faces_keep_the_last_render_and_drop_the_oldest_beyond_their_budget():
    face = np.zeros((512, 512, 3), np.uint8)  # 768 KiB
    kept = FinishedFaces(budget_bytes=face.nbytes)
    for w in (0.0, 0.25, 0.5, 0.75):
        kept.put((0, w, 1), face)
    kept.get((0, 0.0, 1))  # used again: now the most recent

    kept.trim(in_use={(0, 0.75, 1)})

    assert len(kept) == 2
    assert kept.get((0, 0.25, 1)) is None and kept.get((0, 0.5, 1)) is None
    assert kept.get((0, 0.0, 1)) is not None and kept.get((0, 0.75, 1)) is not None


def test_a_subset_of_faces_is_taken_from_the_batches_they_were_encoded_in():
    def encoded(codes: list[int]) -> EncodedFaces:  # tiny stand-ins: one code per face tells them apart
        idx = torch.tensor(codes).repeat_interleave(4).reshape(len(codes), 4)
        return EncodedFaces(quant_feat=idx.float(), skips={64: idx.float()}, logits=idx.float(), idx=idx,
                            lq_feat=idx.float())  # fmt: skip

    batches = [((0, 2, 3), encoded([0, 2, 3])), ((1,), encoded([1]))]  # as a GPU encodes: several faces a pass
    prepared = PreparedFaces(detected=[], affines=[], crops=[], face_holes=None, encoded=batches)

    order, parts = prepared.encoded_faces([3, 1, 2])

    assert order == [2, 3, 1]
    assert [part.idx[:, 0].tolist() for part in parts] == [[2, 3], [1]]
    assert parts[1] is prepared.encoded[1][1], "a batch wanted whole is passed on as it is"


def test_the_sweep_summary_names_the_face_its_ws_and_the_total_time():
    faces = [np.zeros((512, 512, 3), np.uint8)] * 3
    sweep = FidelitySweep(face_index=2, fidelities=(0.0, 0.25, 1.0), faces=faces,
                          timings={"encode": 0.5, "decode": 1.26})  # fmt: skip

    assert sweep.summary() == "Face 2 at w = 0, 0.25, 1 in 1.8 s."
