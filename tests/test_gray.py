"""Grey photos stay grey, keeping their tint: the official treatment of faces restored from a grey input."""

import cv2
import numpy as np

from codeformer_core.faces.gray import gray_like_input, luminance, to_gray

from .conftest import SAMPLES


def channel_statistics(bgr: np.ndarray) -> np.ndarray:
    pixels = bgr.reshape(-1, 3).astype(np.float64)
    return np.stack([pixels.mean(axis=0), pixels.std(axis=0)])


def test_a_restored_face_gets_the_given_faces_channel_means_and_deviations():
    gray = cv2.imread(str(SAMPLES / "gray" / "Hepburn02.png")).astype(np.float64)
    given = np.rint(0.6 * gray + 40 + [-14, -4, 10])  # a sepia tint, with room for the match to stay in 0-255
    given = given.astype(np.uint8)
    restored = cv2.imread(str(SAMPLES / "aligned" / "0240.png"))  # a colour face, as the network might return

    matched = gray_like_input(restored, given)

    assert matched.dtype == np.uint8 and matched.shape == (512, 512, 3)
    assert np.abs(channel_statistics(matched) - channel_statistics(given)).max() < 0.3
    # Every channel is the same grey picture, only shifted and scaled: the restored face's luminance.
    for channel in range(3):
        assert np.corrcoef(matched[..., channel].ravel(), luminance(restored).ravel())[0, 1] > 0.999


def test_grey_uses_the_official_weights_without_losing_an_equal_channel_grey():
    pixels = np.array([[[10, 20, 200], [77, 77, 77], [255, 255, 255]]], np.uint8)  # BGR

    gray = to_gray(pixels)

    expected = [round(0.2989 * 200 + 0.5870 * 20 + 0.1140 * 10), 77, 255]
    assert gray[0, :, 0].tolist() == gray[0, :, 1].tolist() == gray[0, :, 2].tolist() == expected
