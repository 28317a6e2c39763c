"""The page in a real browser (Debian's chromium through Playwright): upload a photo, press Run, see before/after;
move the fidelity slider and see the result re-rendered from the kept encoding.

The screenshot is kept as test-artifacts/browser.png (git-ignored) for a person to look at.
"""

from pathlib import Path

import pytest

from .app_server import running_app
from .conftest import SAMPLES

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
SCREENSHOT = Path(__file__).resolve().parents[1] / "test-artifacts" / "browser.png"
RUN_TIMEOUT_MS = 180_000  # download of the 370 MB checkpoint from the fake Hub plus a CPU forward

# No skip when chromium is missing: .ci/run installs it, and a browser test that quietly skips proves nothing.
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_url(official_checkpoint, tmp_path_factory) -> str:
    with running_app(official_checkpoint, ["restore"], tmp_path_factory.mktemp("app")) as url:
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
