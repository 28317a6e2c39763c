"""The app's named API endpoints, driven with gradio_client against the app served on 127.0.0.1.

Each task runs the full network once on an aligned 512x512 face (golden weights from the fake Hub); the error
cases and the handler checks run no network. (Moving the fidelity slider is tested in the browser.)
"""

from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

import app
from codeformer_core.images import read_image_array
from codeformer_core.network import reduced_precision
from codeformer_core.pipeline import Pipeline
from codeformer_core.settings import HubSettings
from codeformer_core.weights import WeightStore
from demo.api import NO_IMAGE, ApiHandlers
from demo.notices import missing_weights_notice
from demo.outputs import RequestFiles
from demo.photo_tab import PhotoPage
from demo.running import PREVIEW_MAX_SIDE, editor_image_and_mask, preview_pair

from .app_server import running_app
from .conftest import SAMPLES
from .fake_hub import closed_port_url

FACE = SAMPLES / "aligned" / "0240.png"
GRAY_FACE = SAMPLES / "gray" / "Hepburn02.png"
HOLE = (slice(200, 300), slice(150, 350))  # rows, columns of the rectangle the inpaint test masks


@pytest.fixture(scope="module")
def client(official_checkpoint, tmp_path_factory) -> Client:
    with running_app(official_checkpoint, ["restore", "colorize", "inpaint"], tmp_path_factory.mktemp("app")) as url:
        yield Client(url, verbose=False)


def read_png(path: str) -> np.ndarray:
    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return cv2.imread(path, cv2.IMREAD_UNCHANGED)


def aligned_settings(**overrides) -> dict:
    return {"upscale": 1, "aligned": True, **overrides}


SHARED = ["upscale", "aligned", "background_enhance", "face_upsample", "detector", "only_center_face"]
ENDPOINT_PARAMETERS = {
    "/restore": ["image", "fidelity", *SHARED, "face_fidelities", "skip_faces", "exact"],
    "/colorize": ["image", *SHARED, "exact"],
    "/inpaint": ["image", *SHARED, "mask", "exact"],
    "/batch": ["photos", "task", "fidelity", *SHARED, "exact"],
    "/video": ["video", "task", "fidelity", *[name for name in SHARED if name != "aligned"], "exact"],
}
"""What clients call by name and position: a change here breaks every client written against it."""


def test_every_endpoint_takes_its_parameters_by_name_in_their_order(client):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]

    names = {endpoint: [p["parameter_name"] for p in info["parameters"]] for endpoint, info in api.items()}
    assert names == ENDPOINT_PARAMETERS
    exact = [p for p in api["/restore"]["parameters"] if p["parameter_name"] == "exact"]
    assert exact[0]["parameter_default"] is False  # a client that does not pass it gets fast mode


def test_restore_returns_a_png_and_a_report(client):
    path, report = client.predict(handle_file(FACE), fidelity=0.7, **aligned_settings(), api_name="/restore")

    restored, face = read_png(path), cv2.imread(str(FACE))
    assert restored.shape == face.shape == (512, 512, 3)
    assert np.abs(restored.astype(int) - face.astype(int)).mean() > 1.0
    assert report.startswith("restore: 1 of 1 face(s) processed")


def test_exact_float32_is_asked_for_by_name_and_said_in_the_report(client):
    _, fast_report = client.predict(handle_file(FACE), **aligned_settings(), api_name="/restore")
    exact_path, exact_report = client.predict(handle_file(FACE), **aligned_settings(), exact=True, api_name="/restore")

    assert "\nRan in exact float32, " in exact_report and read_png(exact_path).shape == (512, 512, 3)
    fast = "exact float32" if reduced_precision("cpu") == "float32" else "fast mode (codes in float32, decoder in bf16)"
    assert f"\nRan in {fast}, " in fast_report
    _, colorized = client.predict(handle_file(GRAY_FACE), **aligned_settings(), exact=True, api_name="/colorize")
    assert "\nRan in exact float32, " in colorized


def test_restore_takes_face_choices_and_reports_each_face(client):
    at_point_seven, _ = client.predict(handle_file(FACE), fidelity=0.7, **aligned_settings(), api_name="/restore")

    own, report = client.predict(
        handle_file(FACE), fidelity=0.2, face_fidelities="0=0.7", **aligned_settings(), api_name="/restore"
    )
    assert np.array_equal(read_png(own), read_png(at_point_seven))
    assert "Face by face: 0: w=0.7." in report and "decoded face 0" in report
    assert "Faces by index (box x1, y1, x2, y2 in input pixels): 0: 0, 0, 512, 512." in report

    kept, report = client.predict(handle_file(FACE), skip_faces="0", **aligned_settings(), api_name="/restore")
    assert np.array_equal(read_png(kept), cv2.imread(str(FACE)))
    assert report.startswith("restore: 0 of 1 face(s) processed") and "Face by face: 0: kept original." in report


@pytest.mark.parametrize(
    "choices, message",
    [
        ({"skip_faces": "0, one"}, "skip_faces: a face is given by its index in the report (0, 1, ...); got 'one'"),
        ({"face_fidelities": "3=0.5"}, "There is no face 3: this image has 1 face(s); its one face is face 0."),
    ],
)
def test_restore_refuses_bad_face_choices_in_one_line(client, choices, message):
    with pytest.raises(AppError) as caught:
        client.predict(handle_file(FACE), **aligned_settings(), **choices, api_name="/restore")

    assert str(caught.value) == message


def test_colorize_returns_a_colour_face(client):
    path, report = client.predict(handle_file(GRAY_FACE), **aligned_settings(), api_name="/colorize")

    result = read_png(path)
    assert report.startswith("colorize: 1 of 1 face(s) processed")
    assert result.shape[:2] == (512, 512)
    assert np.abs(result[..., 0].astype(int) - result[..., 2].astype(int)).mean() > 1.0  # not gray any more


def test_inpaint_changes_only_the_masked_pixels(client, tmp_path):
    mask = np.zeros((512, 512), np.uint8)
    mask[HOLE] = 255
    mask_path = tmp_path / "mask.png"
    cv2.imwrite(str(mask_path), mask)

    path, report = client.predict(
        handle_file(FACE), **aligned_settings(), mask=handle_file(mask_path), api_name="/inpaint"
    )

    result, face = read_png(path), cv2.imread(str(FACE))
    assert report.startswith("inpaint: 1 of 1 face(s) processed")
    outside = mask == 0
    assert np.array_equal(result[outside], face[outside])
    assert np.abs(result[HOLE].astype(int) - face[HOLE].astype(int)).mean() > 5.0


def test_a_file_that_is_not_an_image_gets_one_line(client, tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("my holiday notes, not a picture")

    with pytest.raises(AppError) as caught:
        client.predict(handle_file(notes), api_name="/colorize")

    message = str(caught.value)
    assert message.startswith("The file is not a PNG, JPEG") and "\n" not in message


def test_inpaint_without_holes_says_what_to_do(client):
    with pytest.raises(AppError, match="There is nothing to inpaint: paint over the damaged parts"):
        client.predict(handle_file(FACE), **aligned_settings(), api_name="/inpaint")


def weightless_pipeline(tmp_path: Path) -> Pipeline:
    """Enough for handlers that refuse before any network runs."""
    return Pipeline(WeightStore(tmp_path / "no-weights", hub=HubSettings(offline=True)), device="cpu")


def test_a_corrupt_mask_is_named_and_a_missing_image_is_said_first(tmp_path):
    handlers = ApiHandlers(weightless_pipeline(tmp_path), RequestFiles())
    settings = (1, True, False, False, "retinaface_resnet50", False)

    with pytest.raises(gr.Error) as caught:
        handlers.inpaint(FACE.read_bytes(), *settings, mask=b"not a picture")
    assert caught.value.message.startswith("mask: The file is not a PNG, JPEG")
    with pytest.raises(gr.Error) as caught:
        handlers.inpaint(None, *settings, mask=b"not a picture")
    assert caught.value.message == NO_IMAGE


def test_face_panel_controls_say_when_the_last_photo_is_no_longer_kept(tmp_path):
    page = PhotoPage(weightless_pipeline(tmp_path), RequestFiles())
    picked = gr.SelectData(None, {"index": 0, "value": None})
    expired = "The last photo is no longer kept: press Run again."
    controls = [
        lambda: page.choose_faces([0], 0, None),
        lambda: page.change_face_fidelity(0.7, 0, None),
        lambda: page.pick_swept(0, None, picked),
        lambda: page.pick_face(None, picked),
        lambda: page.show_face(0, None),
        lambda: page.compare(0, None),
    ]

    for control in controls:
        with pytest.raises(gr.Error) as caught:
            control()
        assert caught.value.message == expired
    # The main slider can move before any run: it stays silent.
    assert all(update == gr.skip() for update in page.change_fidelity(0.7, None, None))


def test_missing_weights_banner_names_the_files_and_both_fixes(tmp_path, monkeypatch):
    # An empty Hugging Face cache: the served app's cache holds CodeFormer files.
    hub = HubSettings(endpoint="http://hub.invalid", cache_dir=tmp_path / "empty-hf-home" / "hub")
    pipeline = Pipeline(WeightStore(tmp_path / "empty", hub=hub), device="cpu")

    notice = missing_weights_notice(pipeline)

    for name in ("codeformer.pth", "codeformer_colorization.pth", "codeformer_inpainting.pth",
                 "detection_Resnet50_Final.pth", "parsing_parsenet.pth", "RealESRGAN_x2plus.pth"):
        assert f"`{name}`" in notice
    assert f"`{tmp_path / 'empty'}`" in notice
    assert "http://hub.invalid" in notice and "`HF_ENDPOINT`" in notice


def test_share_without_network_is_one_phrase(monkeypatch):
    monkeypatch.setattr(app, "GRADIO_API_SERVER", closed_port_url() + "/v3/tunnel-request")

    assert app.share_server_problem() == "127.0.0.1 is not reachable (ConnectError)"


def test_the_editor_gives_the_photo_and_its_painted_or_white_pixels_as_holes():
    background = np.full((64, 96, 4), (10, 20, 30, 255), np.uint8)
    background[5:10, 5:10, :3] = 255  # white holes already in the uploaded photo
    layer = np.zeros((64, 96, 4), np.uint8)
    layer[40:50, 60:90] = (255, 255, 255, 128)  # a painted stroke, partly transparent at its edge

    image, holes = editor_image_and_mask({"background": background, "layers": [layer], "composite": None})

    assert image.alpha is None and image.bgr.shape == (64, 96, 3)
    assert tuple(image.bgr[0, 0]) == (30, 20, 10)  # RGB in, BGR out
    expected = np.zeros((64, 96), bool)
    expected[5:10, 5:10] = expected[40:50, 60:90] = True
    assert np.array_equal(holes > 0.5, expected)


def test_the_slider_pair_has_one_size_capped_for_the_page():
    small = read_image_array(np.zeros((300, 200, 3), np.uint8))

    before, after = preview_pair(small, np.zeros((1200, 800, 3), np.uint8))
    assert before.shape == after.shape == (1200, 800, 3)

    before, after = preview_pair(small, np.zeros((3000, 2000, 3), np.uint8))
    assert before.shape == after.shape == (PREVIEW_MAX_SIDE, round(2000 * PREVIEW_MAX_SIDE / 3000), 3)
