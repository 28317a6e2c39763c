"""The page in a real browser (Debian's chromium through Playwright): upload a photo, press Run, see before/after;
move the fidelity slider and see the result re-rendered from the kept encoding; leave a face out, put it back, and
give it a w picked from the side-by-side comparison; log in to an app with a password, and be told when a job
would be one too many.

The screenshots are kept in test-artifacts/ (git-ignored) for a person to look at.
"""

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from codeformer_core.credentials import Login
from codeformer_core.settings import HubSettings
from codeformer_core.weights import WeightStore
from demo import build_demo
from demo.turns import too_many_jobs

from .app_server import GatedRestorer, running_app, served
from .conftest import SAMPLES

CHROMIUM = Path(os.environ.get("CODEFORMER_CHROMIUM") or "/usr/bin/chromium")  # as tools/ensure_chromium.sh
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
SCREENSHOT = Path(__file__).resolve().parents[1] / "test-artifacts" / "browser.png"
FACES_SCREENSHOT = SCREENSHOT.with_name("browser-faces.png")
RUN_TIMEOUT_MS = 180_000  # download of the 370 MB checkpoint from the fake Hub plus a CPU forward

# No skip when chromium is missing: `make test` installs it or stops first, and a browser test that quietly skips
# proves nothing.
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_url(official_checkpoint, stand_in_weights, tmp_path_factory) -> str:
    parser = {"parsing_parsenet.pth": stand_in_weights("parsing_parsenet.pth") / "parsing_parsenet.pth"}
    with running_app(official_checkpoint, ["restore"], tmp_path_factory.mktemp("app"), parser) as url:
        yield url


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 1000})
        finally:
            browser.close()


def test_upload_run_and_see_before_and_after(app_url, page):
    page.goto(app_url)
    banner = page.locator("#weights-notice")
    banner.wait_for(state="visible")
    assert "codeformer.pth" in banner.inner_text()

    page.locator("#photo input[type=file]").set_input_files(SAMPLES / "aligned" / "0240.png")
    page.locator("#photo img").first.wait_for()
    page.locator("#aligned input[type=checkbox]").check()
    page.locator("#run").click()

    slider_images = page.locator("#before-after img")
    slider_images.nth(1).wait_for(timeout=RUN_TIMEOUT_MS)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#before-after img')].filter(i => i.naturalWidth > 0).length == 2"
    )
    report = page.locator("#report textarea")
    first_report = report.input_value()
    first_result = slider_images.nth(1).get_attribute("src")
    assert first_report.startswith("restore: 1 of 1 face(s) processed")
    assert page.locator("#faces img").count() == 1
    assert page.locator("#download").get_by_text(".png").count() == 1

    track = page.locator("#fidelity input[type=range]").bounding_box()
    page.mouse.click(track["x"] + 0.9 * track["width"], track["y"] + track["height"] / 2)
    page.wait_for_function(
        "() => document.querySelector('#report textarea').value.includes('Reused')", timeout=RUN_TIMEOUT_MS
    )
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=SCREENSHOT, full_page=True)

    assert "Reused from the previous run: the encoded face." in report.input_value()
    assert slider_images.nth(1).get_attribute("src") != first_result


def shown_result(page) -> np.ndarray:
    """The result half of the before/after slider, as the page received it."""
    source = page.locator("#before-after img").nth(1).get_attribute("src")
    return cv2.imdecode(np.frombuffer(page.request.get(source).body(), np.uint8), cv2.IMREAD_COLOR)


def wait_for_report(page, text: str) -> str:
    page.wait_for_function(
        "text => document.querySelector('#report textarea').value.includes(text)", arg=text, timeout=RUN_TIMEOUT_MS
    )
    return page.locator("#report textarea").input_value()


def test_leave_a_face_out_put_it_back_and_pick_its_w_side_by_side(app_url, page):
    page.goto(app_url)
    page.locator("#photo input[type=file]").set_input_files(SAMPLES / "whole" / "03.jpg")
    page.locator("#photo img").first.wait_for()
    page.locator("#detector input").click()
    page.get_by_role("option", name="dlib").click()
    page.locator("#run").click()
    wait_for_report(page, "restore: 1 of 1 face(s) processed")
    restored = shown_result(page)

    face = page.locator("#faces-to-restore input[type=checkbox]")
    assert face.count() == 1 and face.first.is_checked()
    face.first.uncheck()
    report = wait_for_report(page, "Face by face: 0: kept original.")
    left_out = shown_result(page)
    assert report.startswith("restore: 0 of 1 face(s)") and "face detection and alignment" in report
    assert left_out.shape == restored.shape and np.any(left_out != restored)

    face.first.check()
    report = wait_for_report(page, "decoded face 0")
    assert np.array_equal(shown_result(page), restored)  # back from the kept decode, exactly as before

    page.locator("#compare").click()
    page.wait_for_function("() => document.querySelectorAll('#sweep img').length == 5", timeout=RUN_TIMEOUT_MS)
    assert page.locator("#sweep").get_by_text("w = 0.75").count() == 1
    page.locator("#sweep img").nth(4).click()
    report = wait_for_report(page, "Face by face: 0: w=1.")
    page.screenshot(path=FACES_SCREENSHOT, full_page=True)
    assert "decoded face 0" in report, "the comparison decoded it already"
    assert page.locator("#face-fidelity input[type=number]").input_value() == "1"
    assert np.any(shown_result(page) != restored)


def test_log_in_then_be_told_at_once_when_a_job_would_be_one_too_many(page, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    restorer = GatedRestorer(WeightStore(tmp_path / "no-weights", hub=HubSettings(offline=True)))
    with served(build_demo(restorer), auth=[Login("ada", "correct horse")]) as url:
        try:
            page.goto(url)
            page.locator("input[type=password]").wait_for()
            assert page.locator("#run").count() == 0, "nothing of the app before the password"
            page.locator("input[type=text]").fill("ada")
            page.locator("input[type=password]").fill("correct horse")
            page.get_by_role("button", name="Login").click()

            page.locator("#photo input[type=file]").set_input_files(SAMPLES / "aligned" / "0240.png")
            page.locator("#photo img").first.wait_for()
            page.locator("#run").click()
            assert restorer.started.acquire(timeout=60), "the first job runs, held at the gate"
            track = page.locator("#fidelity input[type=range]").bounding_box()
            page.mouse.click(track["x"] + 0.9 * track["width"], track["y"] + track["height"] / 2)  # the second job
            page.get_by_role("tab", name="Batch").click()
            page.locator("#batch-photos input[type=file]").set_input_files(SAMPLES / "aligned" / "0342.png")
            page.locator("#batch-photos").get_by_text("0342.png").wait_for()
            page.locator("#batch-run").click()

            page.locator("#batch-photos").get_by_text(too_many_jobs(2)).wait_for(timeout=10_000)
        finally:
            restorer.gate.set()
