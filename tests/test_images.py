"""Reading and writing images: every bad input is made here, in memory or in tmp_path."""

import io
import resource
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps
from skimage import data

from codeformer_core.errors import ImageTooLargeError, InvalidImageError, InvalidOptionError
from codeformer_core.images import (
    DEFAULT_MAX_PIXELS,
    GRAY_THRESHOLD,
    MIN_SIDE,
    LoadedImage,
    encode_png,
    finish_output,
    fit_working_size,
    read_image,
    read_image_array,
    safe_stem,
    to_rgb,
    write_png,
)

from .conftest import SAMPLES


def encoded(picture: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, fmt, **options)
    return buffer.getvalue()


def cv2_png(array: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", array)
    assert ok
    return buffer.tobytes()


def handmade_png(width: int, height: int, scanlines: bytes, bit_depth: int = 8, colour_type: int = 2) -> bytes:
    """A PNG written chunk by chunk, so its header can claim anything (colour_type 2 = RGB, 4 = gray + alpha)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(scanlines))
        + chunk(b"IEND", b"")
    )


def png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming width x height RGB pixels with 64 bytes of pixel data."""
    return handmade_png(width, height, b"\0" * 64)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """512 x 512 x 3 RGB colour photo."""
    return data.astronaut()


def official_gray_statistic(bgr: np.ndarray) -> float:
    """The official is_gray formula written out over whole arrays, as the reference for our chunked sums."""
    b, g, r = (bgr[:, :, i].astype(np.int16) for i in range(3))
    return float(((b - g).var() + (g - r).var() + (r - b).var()) / 3.0)


# --- files that are not usable images -------------------------------------------------------------------------


def test_text_file_renamed_png_is_refused(tmp_path):
    path = tmp_path / "photo.png"
    path.write_text("Dear customer,\nthis is not a picture.\n" * 20)
    with pytest.raises(InvalidImageError, match="not a PNG, JPEG, WEBP, GIF, BMP or TIFF image"):
        read_image(path)


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(InvalidImageError, match=r"empty \(0 bytes\)"):
        read_image(path)
    with pytest.raises(InvalidImageError, match="empty"):
        read_image(b"")


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(InvalidImageError, match="'gone.png'"):
        read_image(tmp_path / "gone.png")


@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_truncated_jpeg_fails_instead_of_being_padded(astronaut, keep):
    jpeg = encoded(Image.fromarray(astronaut), "JPEG", quality=90)
    with pytest.raises(InvalidImageError, match="truncated") as raised:
        read_image(jpeg[: int(len(jpeg) * keep)])
    assert "\n" not in str(raised.value)


def test_truncated_16_bit_png_fails():
    png = cv2_png(np.random.default_rng(0).integers(0, 65535, (64, 64, 3), dtype=np.uint16))
    with pytest.raises(InvalidImageError, match="truncated|damaged"):
        read_image(png[: len(png) // 2])


def test_formats_outside_the_allow_list_are_refused(astronaut):
    with pytest.raises(InvalidImageError, match="not a PNG"):
        read_image(encoded(Image.fromarray(astronaut), "PCX"))


# --- size limits ------------------------------------------------------------------------------------------------


def test_tiny_image_is_refused_with_its_size():
    with pytest.raises(InvalidImageError, match=rf"1x1 pixels; both sides must be at least {MIN_SIDE}"):
        read_image(encoded(Image.new("RGB", (1, 1)), "PNG"))
    with pytest.raises(InvalidImageError, match="200x15 pixels"):
        read_image(encoded(Image.new("RGB", (200, 15)), "PNG"))
    assert read_image(encoded(Image.new("RGB", (MIN_SIDE, MIN_SIDE)), "PNG")).size == (MIN_SIDE, MIN_SIDE)


def test_decompression_bomb_is_refused_from_the_header():
    """30000x30000 claimed in about 100 bytes: refused before decoding, in milliseconds, without memory growth."""
    bomb = png_header_only(30000, 30000)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="more than 179.0 megapixels .*the limit is 50.0 megapixels"):
        read_image(bomb)
    assert time.perf_counter() - started < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 100_000  # KiB: far below 2.7 GB


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("side", [8000, 10000])  # below, then inside, Pillow's own warning band
def test_our_pixel_limit_quotes_size_and_limit(side):
    # Had the pixels been decoded, the 64 data bytes would have raised "truncated" instead.
    expected = rf"{side}x{side} = {side * side / 1e6:.1f} megapixels; the limit is {DEFAULT_MAX_PIXELS / 1e6:.1f}"
    started = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match=expected):
        read_image(png_header_only(side, side))
    assert time.perf_counter() - started < 0.5


def test_pixel_limit_is_configurable():
    picture = encoded(Image.new("RGB", (64, 48)), "PNG")
    with pytest.raises(ImageTooLargeError, match=r"64x48 = 0.0 megapixels; the limit is 0.0 megapixels"):
        read_image(picture, max_pixels=3000)
    assert read_image(picture, max_pixels=3072).size == (64, 48)
    with pytest.raises(ImageTooLargeError, match="64x48"):
        read_image_array(np.zeros((48, 64, 3), np.uint8), max_pixels=3000)


def test_byte_limit_for_bytes_and_paths(tmp_path):
    picture = encoded(Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 300, 3), np.uint8)), "PNG")
    path = tmp_path / "noise.png"
    path.write_bytes(picture)
    limit = len(picture) - 1
    for source in (picture, path, str(path)):
        with pytest.raises(ImageTooLargeError, match=r"MB; the limit is 0.3 MB"):
            read_image(source, max_bytes=limit)
        assert read_image(source, max_bytes=len(picture)).size == (300, 300)


# --- layouts, depths and colour models -------------------------------------------------------------------------


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (32, 24), colour) for colour in ("red", "blue", "green")]
    gif = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    loaded = read_image(gif)
    assert loaded.source_format == "GIF"
    assert loaded.size == (32, 24)
    assert loaded.bgr[12, 16].tolist() == [0, 0, 255]
    assert any("only the first frame" in note for note in loaded.notes)


def test_16_bit_gray_png_maps_to_8_bit():
    values = np.array([[0, 257, 32896, 65280, 65535]], np.uint16).repeat(16, axis=0).repeat(4, axis=1)
    loaded = read_image(cv2_png(values))
    assert Image.open(io.BytesIO(cv2_png(values))).mode == "I;16"
    assert loaded.bgr[0, ::4, 0].tolist() == [0, 1, 128, 254, 255]
    assert loaded.is_gray and "The 16-bit PNG was converted to 8-bit." in loaded.notes


def test_16_bit_colour_png_reads_all_16_bits():
    """Pillow keeps only the high byte of 16-bit RGB (0xFF00 -> 255); rounding the full value gives 254."""
    rgb = np.zeros((16, 16, 3), np.uint16)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 65535, 32896, 65280
    loaded = read_image(cv2_png(np.ascontiguousarray(rgb[..., ::-1])))
    assert loaded.bgr[0, 0].tolist() == [254, 128, 255]
    assert "The 16-bit PNG was converted to 8-bit." in loaded.notes and loaded.alpha is None


def test_16_bit_rgba_png_keeps_alpha():
    bgra = np.zeros((16, 20, 4), np.uint16)
    bgra[..., 2], bgra[..., 3] = 65535, 32896
    loaded = read_image(cv2_png(bgra))
    assert loaded.bgr[0, 0].tolist() == [0, 0, 255]
    assert loaded.alpha is not None and loaded.alpha.shape == (16, 20) and loaded.alpha[0, 0] == 128


def test_16_bit_gray_alpha_png():
    """Pillow opens 16-bit gray + alpha as RGBA, keeping only high bytes; we decode the 16 bits."""
    pixels = np.zeros((16, 20, 2), ">u2")
    pixels[..., 0], pixels[..., 1] = 65280, 32896
    scanlines = b"".join(b"\0" + row.tobytes() for row in pixels)  # filter type 0 before each row
    loaded = read_image(handmade_png(20, 16, scanlines, bit_depth=16, colour_type=4))
    assert loaded.bgr[0, 0].tolist() == [254, 254, 254] and loaded.alpha[0, 0] == 128 and loaded.is_gray


def test_cmyk_jpeg_comes_out_in_roughly_the_right_colours(astronaut):
    cmyk = Image.fromarray(astronaut).convert("CMYK")
    loaded = read_image(encoded(cmyk, "JPEG", quality=95))
    assert "The CMYK JPEG was converted to RGB." in loaded.notes
    assert np.abs(to_rgb(loaded.bgr).astype(int) - astronaut).mean() < 4.0
    assert not loaded.is_gray


def test_rgba_png_alpha_is_kept_and_restored_at_2x():
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 1] = 200
    rgba[:, :15, 3] = 255  # left half opaque, right half transparent
    loaded = read_image(encoded(Image.fromarray(rgba), "PNG"))
    assert loaded.bgr[0, 0].tolist() == [0, 200, 0]
    assert loaded.alpha is not None and loaded.alpha[:, :15].min() == 255 and loaded.alpha[:, 15:].max() == 0
    assert "The transparency (alpha channel) was kept." in loaded.notes

    output = finish_output(cv2.resize(loaded.bgr, (60, 40)), loaded)
    assert output.shape == (40, 60, 4)
    assert output[:, :28, 3].min() == 255 and output[:, 32:, 3].max() == 0
    assert output[5, 5, :3].tolist() == [0, 200, 0]


def test_finish_output_without_alpha_returns_bgr_unchanged():
    loaded = read_image_array(np.zeros((20, 20, 3), np.uint8))
    result = np.ones((40, 40, 3), np.uint8)
    assert finish_output(result, loaded) is result


def test_finish_output_shrinks_alpha_too():
    alpha = np.zeros((40, 40), np.uint8)
    alpha[:, :20] = 255
    loaded = read_image_array(np.dstack([np.zeros((40, 40, 3), np.uint8), alpha]))
    output = finish_output(np.zeros((20, 20, 3), np.uint8), loaded)
    assert output.shape == (20, 20, 4) and output[:, :10, 3].min() == 255 and output[:, 10:, 3].max() == 0


def test_gray_alpha_png_is_gray_with_alpha():
    gray = np.tile(np.arange(0, 240, 8, dtype=np.uint8), (20, 1))
    alpha = np.full_like(gray, 77)
    loaded = read_image(encoded(Image.fromarray(np.dstack([gray, alpha]), "LA"), "PNG"))
    assert loaded.is_gray and loaded.alpha is not None and loaded.alpha[0, 0] == 77
    assert loaded.bgr[0, 3].tolist() == [24, 24, 24]


def test_palette_png_with_and_without_transparency():
    palette = Image.new("P", (20, 20), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    opaque = read_image(encoded(palette, "PNG"))
    assert opaque.alpha is None and opaque.bgr[0, 0].tolist() == [0, 0, 255]
    see_through = read_image(encoded(palette, "PNG", transparency=1))
    assert see_through.alpha is not None and see_through.alpha.max() == 0


def test_black_and_white_bitmap():
    loaded = read_image(encoded(Image.new("1", (20, 20), 1), "PNG"))
    assert loaded.is_gray and loaded.bgr.min() == 255


# --- grayscale detection ----------------------------------------------------------------------------------------


def test_grayscale_detection(astronaut):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    assert read_image(encoded(Image.fromarray(gray), "PNG")).is_gray  # one channel
    assert read_image(encoded(Image.fromarray(np.dstack([gray] * 3)), "PNG")).is_gray  # three equal channels
    noise = np.random.default_rng(2).integers(-2, 3, gray.shape + (3,))
    nearly = np.clip(np.dstack([gray] * 3) + noise, 0, 255).astype(np.uint8)
    assert read_image_array(nearly).is_gray  # within the official tolerance
    assert not read_image(encoded(Image.fromarray(astronaut), "PNG")).is_gray


def test_gray_statistic_matches_the_official_formula(astronaut):
    """Noise of sigma 2 and 2.5 per channel puts the statistic at ~8 and ~12.5, either side of the threshold 10."""
    gray = astronaut.mean(axis=2, keepdims=True)
    rng = np.random.default_rng(3)
    for sigma, expected in ((2.0, True), (2.5, False)):
        bgr = np.clip(np.rint(gray + rng.normal(0, sigma, gray.shape[:2] + (3,))), 0, 255).astype(np.uint8)
        assert (official_gray_statistic(bgr) <= GRAY_THRESHOLD) == expected
        assert read_image_array(bgr, channel_order="BGR").is_gray == expected


def test_real_samples_gray_and_colour():
    for path in sorted((SAMPLES / "gray").glob("*.png")):
        assert read_image(path).is_gray, path.name
    assert read_image(SAMPLES / "gray" / "Einstein02.png").alpha is not None
    for path in sorted((SAMPLES / "whole").glob("*.jpg")):
        assert not read_image(path).is_gray, path.name


# --- EXIF orientation ------------------------------------------------------------------------------------------


def marked_picture() -> Image.Image:
    """40 wide x 20 high, gray, with a red 4x4 patch in the top-left corner as stored."""
    pixels = np.full((20, 40, 3), 90, np.uint8)
    pixels[:4, :4] = (255, 0, 0)
    return Image.fromarray(pixels)


def with_orientation(picture: Image.Image, orientation: int, fmt: str = "JPEG") -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(picture, fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))


def test_exif_orientation_6_is_rotated_upright():
    loaded = read_image(with_orientation(marked_picture(), 6))
    assert loaded.size == (20, 40)
    # Rotating 90 degrees clockwise takes the stored top-left corner to the top-right.
    top_right, top_left = loaded.bgr[1, 18], loaded.bgr[1, 1]  # B, G, R
    assert top_right[2] > 200 and top_right[0] < 60
    assert top_left[2] < 120
    assert any("rotated 90 degrees clockwise" in note for note in loaded.notes)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow(orientation):
    png = with_orientation(marked_picture(), orientation, "PNG")
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(png))).convert("RGB"))
    loaded = read_image(png)
    assert np.array_equal(to_rgb(loaded.bgr), expected)
    assert any("EXIF orientation" in note for note in loaded.notes) == (orientation != 1)


# --- arrays that arrive already decoded ------------------------------------------------------------------------


def test_read_image_array_layouts():
    rgb = np.zeros((20, 24, 3), np.uint8)
    rgb[..., 0] = 255
    assert read_image_array(rgb).bgr[0, 0].tolist() == [0, 0, 255]
    assert read_image_array(rgb, channel_order="BGR").bgr[0, 0].tolist() == [255, 0, 0]

    rgba = np.dstack([rgb, np.full((20, 24), 9, np.uint8)])
    loaded = read_image_array(rgba)
    assert loaded.bgr[0, 0].tolist() == [0, 0, 255] and loaded.alpha[0, 0] == 9 and loaded.source_format == "array"

    gray = np.full((20, 24), 70, np.uint8)
    for array in (gray, gray[:, :, None]):
        loaded = read_image_array(array)
        assert loaded.bgr.shape == (20, 24, 3) and loaded.is_gray and loaded.alpha is None
    gray_alpha = read_image_array(np.dstack([gray, gray // 2]))
    assert gray_alpha.bgr[0, 0].tolist() == [70, 70, 70] and gray_alpha.alpha[0, 0] == 35


def test_read_image_array_depths():
    uint16 = np.full((20, 20, 3), 32896, np.uint16)
    loaded = read_image_array(uint16)
    assert loaded.bgr.max() == 128 and "The 16-bit array was converted to 8-bit." in loaded.notes

    unit_float = np.full((20, 20, 3), 0.5, np.float32)
    assert read_image_array(unit_float).bgr.max() == 128
    byte_float = np.full((20, 20), 200.0)
    loaded = read_image_array(byte_float)
    assert loaded.bgr.max() == 200 and "read as 0-255" in loaded.notes[0]

    assert read_image_array(np.full((20, 20), 200, np.int64)).bgr.max() == 200
    assert read_image_array(np.full((20, 20), 65535, np.int32)).bgr.max() == 255
    assert read_image_array(np.ones((20, 20), bool)).bgr.min() == 255


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.full((20, 20), np.nan, np.float32), "NaN"),
        (np.full((20, 20), 300.0), "largest is 300"),
        (np.full((20, 20), -1, np.int16), "from -1 to -1"),
        (np.zeros((20, 20, 5), np.uint8), "has 5"),
        (np.zeros((20, 20, 3), np.complex64), "complex64"),
        (np.zeros((2, 20, 20, 3), np.uint8), "H x W"),
        (np.zeros((10, 20, 3), np.uint8), "20x10 pixels"),
    ],
)
def test_read_image_array_refusals(array, message):
    with pytest.raises(InvalidImageError, match=message):
        read_image_array(array)


# --- working size -----------------------------------------------------------------------------------------------


def test_fit_working_size_reduces_with_a_note():
    alpha = np.full((200, 300), 255, np.uint8)
    loaded = read_image_array(np.dstack([np.full((200, 300, 3), 50, np.uint8), alpha]))
    reduced, scale = fit_working_size(loaded, 150)
    assert scale == 0.5 and reduced.size == (150, 100) and reduced.alpha.shape == (100, 150)
    assert reduced.bgr.max() == 50 and reduced.is_gray
    assert "300x200" in reduced.notes[-1] and "150x100" in reduced.notes[-1]
    assert len(loaded.notes) == len(reduced.notes) - 1  # the original is untouched


def test_fit_working_size_leaves_small_images_alone():
    loaded = read_image_array(np.zeros((100, 80, 3), np.uint8))
    same, scale = fit_working_size(loaded, 100)
    assert same is loaded and scale == 1.0
    with pytest.raises(InvalidOptionError, match="at least"):
        fit_working_size(loaded, 4)


# --- writing ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hint", "stem"),
    [
        ("../../etc/passwd", "passwd"),
        ("/etc/shadow", "shadow"),
        ("C:\\Users\\me\\My Photo (1).jpg", "My_Photo_1"),
        ("..", ""),
        ("", ""),
        (None, ""),
        ("ä" * 5 + ".png", ""),
        ("x" * 100 + ".png", "x" * 40),
    ],
)
def test_safe_stem(hint, stem):
    assert safe_stem(hint) == stem


@pytest.mark.parametrize("hint", ["../../etc/passwd", "/tmp/evil", "..", None, "photo.jpg"])
def test_write_png_stays_in_its_directory(tmp_path, hint):
    target = tmp_path / "out"
    target.mkdir()
    image = np.random.default_rng(4).integers(0, 255, (20, 30, 4), np.uint8)
    path = write_png(image, target, hint)
    assert path.parent == target and path.suffix == ".png" and path.is_file()
    assert list(tmp_path.iterdir()) == [target]
    assert np.array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), image)
    assert write_png(image, target, hint) != path  # a second result never overwrites the first


def test_encode_png_round_trip_and_refusal(tmp_path):
    bgr = np.random.default_rng(5).integers(0, 255, (16, 16, 3), np.uint8)
    assert np.array_equal(read_image(encode_png(bgr)).bgr, bgr)
    with pytest.raises(InvalidImageError, match="float32"):
        encode_png(bgr.astype(np.float32))
    with pytest.raises(InvalidImageError, match="float32"):
        write_png(bgr.astype(np.float32), tmp_path, "result")
    assert list(tmp_path.iterdir()) == []  # a refused image leaves no empty file


def test_to_rgb_swaps_colour_and_keeps_alpha():
    bgra = np.array([[[1, 2, 3, 4]]], np.uint8)
    assert to_rgb(bgra).tolist() == [[[3, 2, 1, 4]]]
    assert to_rgb(bgra[..., :3]).tolist() == [[[3, 2, 1]]]


def test_loaded_image_is_frozen():
    loaded = read_image_array(np.zeros((20, 20, 3), np.uint8))
    assert isinstance(loaded, LoadedImage)
    with pytest.raises(AttributeError):
        loaded.is_gray = True
