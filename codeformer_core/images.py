"""Reading uploads into BGR uint8 arrays, and writing results back out as PNG.

Every input, whether a file or an already-decoded array, goes through one normalisation path: bit depth to 8 bits,
channels to BGR plus an optional alpha plane, EXIF orientation applied, grayscale detected the way the official
CodeFormer code does. Anything we cannot read raises `InvalidImageError` (or `ImageTooLargeError`) with a one-line
message; what we changed to read it is listed in `LoadedImage.notes` for the report.

Limits are module constants passed as keyword arguments; there are no environment variables. The app should also
give its upload widget `DEFAULT_MAX_BYTES`, and hand us the uploaded *file* rather than a decoded array, because
the decompression-bomb check only protects what we decode ourselves.
"""

import dataclasses
import io
import os
import re
import struct
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from .errors import ImageTooLargeError, InvalidImageError, InvalidOptionError
from .layouts import BGRImage

DEFAULT_MAX_PIXELS = 50_000_000
"""Refused before decoding: a 50 MP RGB image already needs 150 MB as uint8 and several times that in the pipeline."""
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
"""Refused before parsing; also the size to give the upload widget."""
DEFAULT_WORKING_SIDE = 4096
"""Longest side the pipeline works at; larger images are reduced by `fit_working_size`."""
MIN_WORKING_SHORT_SIDE = 512
"""A whole photo whose shorter side is below this is enlarged to it before faces are found, as the official
scripts' `FaceRestoreHelper.read_image` does (facexlib's, copied into CodeFormer's facelib): each restored 512-px
face then lands near its own resolution instead of being shrunk."""
MIN_SIDE = 16
"""Below this no face is big enough to detect, let alone restore."""
GRAY_THRESHOLD = 10.0
"""Official `is_gray` tolerance on the mean over channel pairs of the variance of their difference. Being a
variance, it also calls a picture with a uniform colour cast (sepia) gray, as the official code does."""
READABLE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
"""Pillow plugins we let parse uploads (JPEG includes phones' multi-picture MPO); the others are not worth the
exposure (EPS runs Ghostscript, for one)."""

_DIRECT_MODES = frozenset({"L", "LA", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, cv2.error)
_ORIENTATIONS: dict[int, tuple[Callable[[np.ndarray], np.ndarray], str]] = {
    2: (lambda a: a[:, ::-1], "mirrored left to right"),
    3: (lambda a: a[::-1, ::-1], "rotated 180 degrees"),
    4: (lambda a: a[::-1], "flipped upside down"),
    5: (lambda a: a.swapaxes(0, 1), "mirrored and rotated 90 degrees"),
    6: (lambda a: np.rot90(a, -1), "rotated 90 degrees clockwise"),
    7: (lambda a: a[::-1, ::-1].swapaxes(0, 1), "mirrored and rotated 90 degrees"),
    8: (lambda a: np.rot90(a, 1), "rotated 90 degrees counter-clockwise"),
}


@dataclasses.dataclass(frozen=True)
class LoadedImage:
    """A decoded input.

    bgr: H x W x 3 uint8, BGR; a grayscale input has three equal channels.
    alpha: H x W uint8 when the input had an alpha channel or a transparent colour, else None.
    is_gray: the picture is grayscale (one channel, or three channels equal within `GRAY_THRESHOLD`); the pipeline
      turns restored faces gray before paste-back, as the official code does.
    notes: what we did to read it, one sentence each, for the report.
    source_format: Pillow's format name ("PNG", "JPEG", ...) or "array".
    """

    bgr: BGRImage
    alpha: np.ndarray | None
    is_gray: bool
    notes: list[str]
    source_format: str

    @property
    def size(self) -> tuple[int, int]:
        """width, height"""
        return self.bgr.shape[1], self.bgr.shape[0]


def read_image(
    source: bytes | str | os.PathLike,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> LoadedImage:
    """Decode an image file (bytes or a path), refusing bombs, damaged files and unusable sizes before they cost.

    Only the first frame of an animation is read. Raises `ImageTooLargeError` above max_bytes or max_pixels
    (checked from the file size and the header, before decoding) and `InvalidImageError` for anything unreadable.
    """
    data = read_bytes(source, max_bytes)
    Image.init()  # registers every plugin (cheap after the first call); `formats=` only sees registered ones
    with _image_errors(max_pixels), Image.open(io.BytesIO(data), formats=READABLE_FORMATS) as picture:
        # Image.open has parsed the header only. Between Pillow's MAX_IMAGE_PIXELS and twice that it merely
        # warns; this check is what refuses those sizes, before any pixel is decoded.
        _check_dimensions(*picture.size, max_pixels)
        source_format = picture.format or "image"
        notes = []
        if getattr(picture, "is_animated", False):
            notes.append(f"The {source_format} has several frames: only the first frame was used.")
        pixels, channel_order = _decode_pixels(picture, data, notes)
        orientation = picture.getexif().get(ExifTags.Base.Orientation, 1)
    if orientation in _ORIENTATIONS:
        turn, how = _ORIENTATIONS[orientation]
        pixels = turn(pixels)
        notes.append(f"The picture was {how} to stand upright, as its EXIF orientation says.")
    return _normalise(pixels, channel_order, source_format, notes)


def read_image_array(
    array: np.ndarray,
    *,
    channel_order: Literal["RGB", "BGR"] = "RGB",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> LoadedImage:
    """Normalise an already-decoded image, e.g. Gradio's numpy input.

    array: H x W (gray), H x W x 1, H x W x 2 (gray + alpha), H x W x 3 or H x W x 4 (colour + alpha), in
      `channel_order`. uint8 and uint16 are read at their full range, bool as black/white, other integers by their
      values (0-255 as 8-bit, up to 65535 as 16-bit), floats as 0-1 when no value exceeds 1, else as 0-255.
    """
    if not isinstance(array, np.ndarray) or array.ndim not in (2, 3):
        shape = getattr(array, "shape", None)
        raise InvalidImageError(f"Expected an H x W or H x W x C image array; got {type(array).__name__} {shape}.")
    _check_dimensions(array.shape[1], array.shape[0], max_pixels)
    return _normalise(array, channel_order, "array", [])


def fit_working_size(image: LoadedImage, max_side: int = DEFAULT_WORKING_SIDE) -> tuple[LoadedImage, float]:
    """Shrink (INTER_AREA) so the longer side is at most max_side; returns the image and the scale applied (<= 1)."""
    if max_side < MIN_SIDE:
        raise InvalidOptionError(f"The working size must be at least {MIN_SIDE} pixels; got {max_side}.")
    width, height = image.size
    scale = max_side / max(width, height)
    if scale >= 1.0:
        return image, 1.0
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    note = (
        f"The image is {width}x{height}, above the {max_side}-pixel working size:"
        f" it was processed at {new_size[0]}x{new_size[1]} (scale {scale:.3f})."
    )
    return _resized(image, lambda pixels: cv2.resize(pixels, new_size, interpolation=cv2.INTER_AREA), note), scale


def enlarge_small(image: LoadedImage, min_side: int = MIN_WORKING_SHORT_SIDE) -> tuple[LoadedImage, float]:
    """Enlarge (bilinear) so the shorter side is at least min_side; returns the image and the factor (>= 1).

    The factor and the resize call are the official ones, so both pipelines work on the same pixels.
    """
    width, height = image.size
    if min(width, height) >= min_side:
        return image, 1.0
    factor = float(min_side) / min(width, height)
    new_size = (round(width * factor), round(height * factor))  # what cv2.resize makes of fx=fy=factor
    note = (
        f"The image is {width}x{height}, below {min_side} pixels on its shorter side: it was enlarged to"
        f" {new_size[0]}x{new_size[1]} before finding faces, as the official code does, so the restored faces"
        " keep their detail."
    )

    def resize(pixels: np.ndarray) -> np.ndarray:
        return cv2.resize(pixels, (0, 0), fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)

    return _resized(image, resize, note), factor


def _resized(image: LoadedImage, resize: Callable[[np.ndarray], np.ndarray], note: str) -> LoadedImage:
    """`image` and its alpha through the same `resize`, with `note` added to its notes."""
    alpha = None if image.alpha is None else resize(image.alpha)
    return dataclasses.replace(image, bgr=resize(image.bgr), alpha=alpha, notes=[*image.notes, note])


def finish_output(bgr: BGRImage, original: LoadedImage) -> np.ndarray:
    """The result as BGRA with the input's alpha resized to the output size, or `bgr` itself when there was none."""
    if original.alpha is None:
        return bgr
    alpha = original.alpha
    height, width = bgr.shape[:2]
    if alpha.shape != (height, width):
        shrinking = width * height < alpha.size
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        alpha = cv2.resize(alpha, (width, height), interpolation=interpolation)
    return np.dstack([bgr, alpha])


def to_rgb(image: np.ndarray) -> np.ndarray:
    """BGR -> RGB, BGRA -> RGBA (a new contiguous array), for display."""
    code = cv2.COLOR_BGRA2RGBA if image.ndim == 3 and image.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(image, code)


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an H x W x 3 (BGR) or H x W x 4 (BGRA) uint8 image."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise InvalidImageError(f"Only H x W x 3 or 4 uint8 images are written; got {image.dtype} {image.shape}.")
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise InvalidImageError(f"OpenCV could not encode the {image.shape[1]}x{image.shape[0]} result as PNG.")
    return encoded.tobytes()


def write_png(image: np.ndarray, directory: Path, stem_hint: str | None = None) -> Path:
    """Write `image` as a new PNG in `directory` and return its path.

    The name is a uuid4, prefixed by at most 40 letters, digits, '-' or '_' kept from stem_hint's last path
    component; the hint can never choose the directory or overwrite a file.
    """
    stem = safe_stem(stem_hint)
    name = f"{stem}-{uuid.uuid4().hex}.png" if stem else f"{uuid.uuid4().hex}.png"
    encoded = encode_png(image)  # before opening, so a refused image leaves no empty file behind
    path = Path(directory) / name
    with open(path, "xb") as file:
        file.write(encoded)
    return path


def safe_stem(hint: str | None, max_length: int = 40) -> str:
    """'../../etc/passwd' -> 'passwd', 'My Photo (1).jpg' -> 'My_Photo_1'; '' when nothing usable is left."""
    if not hint:
        return ""
    last_component = re.split(r"[\\/]", hint)[-1]
    without_suffix = last_component.rsplit(".", 1)[0]
    return re.sub(r"[^A-Za-z0-9_-]+", "_", without_suffix).strip("_-")[:max_length].strip("_-")


def read_bytes(source: bytes | str | os.PathLike, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of a file (or the buffer given), refusing an empty one or one over max_bytes as `read_image`
    does; a file is read no further than that."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        _check_byte_count(len(data), max_bytes)
        return data
    name = Path(source).name
    try:
        _check_byte_count(os.stat(source).st_size, max_bytes)
        with open(source, "rb") as file:
            data = file.read(max_bytes + 1)
    except OSError as error:
        raise InvalidImageError(f"Could not read the file {name!r}: {error.strerror or error}.") from error
    _check_byte_count(len(data), max_bytes)  # the file may have changed since stat
    return data


def _check_byte_count(count: int, max_bytes: int) -> None:
    if count == 0:
        raise InvalidImageError("The file is empty (0 bytes). Upload an image file.")
    if count > max_bytes:
        raise ImageTooLargeError(
            f"The file is {count / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.1f} MB."
            " Save a smaller or more compressed copy and try again."
        )


def _check_dimensions(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"The image is {width}x{height} = {width * height / 1e6:.1f} megapixels;"
            f" the limit is {max_pixels / 1e6:.1f} megapixels. Resize it and try again."
        )
    if min(width, height) < MIN_SIDE:
        raise InvalidImageError(
            f"The image is {width}x{height} pixels; both sides must be at least {MIN_SIDE} pixels to hold a face."
        )


@contextmanager
def _image_errors(max_pixels: int) -> Iterator[None]:
    """Pillow's and OpenCV's failures while parsing or decoding, as our one-line errors."""
    try:
        yield
    except UnidentifiedImageError as error:
        raise InvalidImageError(
            f"The file is not a {', '.join(READABLE_FORMATS[:-1])} or {READABLE_FORMATS[-1]} image"
            " (a renamed text or document file?). Upload a photo in one of these formats."
        ) from error
    except Image.DecompressionBombError as error:
        # Pillow refuses above twice its MAX_IMAGE_PIXELS before we see the size, so only its limit can be quoted.
        pillow_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise ImageTooLargeError(
            f"The image has more than {pillow_limit / 1e6:.1f} megapixels (the decoder's decompression-bomb limit);"
            f" the limit is {max_pixels / 1e6:.1f} megapixels. Resize it and try again."
        ) from error
    except _DECODE_ERRORS as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise InvalidImageError(
            f"The image could not be decoded: {reason}. The file may be cut short or damaged; save it again and retry."
        ) from error


def _decode_pixels(picture: Image.Image, data: bytes, notes: list[str]) -> tuple[np.ndarray, str]:
    """The first frame as a numpy array in its own depth, and its channel order ("RGB" or "BGR").

    Must run before Pillow loads the picture: loading discards the tile list that tells 16-bit colour apart.
    """
    if _has_wide_colour_channels(picture):
        # Pillow keeps only the high byte of 16-bit colour; OpenCV decodes all 16 bits.
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if pixels is None:
            raise InvalidImageError(
                f"The 16-bit {picture.format} could not be decoded; the file may be truncated or damaged."
            )
        return pixels, "BGR"
    needs_conversion = picture.mode not in _DIRECT_MODES or (
        picture.mode in ("L", "RGB") and "transparency" in picture.info
    )
    if not needs_conversion:
        return np.asarray(picture), "RGB"
    if picture.mode == "CMYK":
        notes.append(f"The CMYK {picture.format} was converted to RGB.")
    return np.asarray(picture.convert("RGBA" if picture.has_transparency_data else "RGB")), "RGB"


def _has_wide_colour_channels(picture: Image.Image) -> bool:
    if picture.mode not in ("LA", "RGB", "RGBA") or not picture.tile:
        return False
    args = picture.tile[0].args
    rawmode = args if isinstance(args, str) else next((arg for arg in args or () if isinstance(arg, str)), "")
    return ";16" in rawmode


def _normalise(pixels: np.ndarray, channel_order: str, source_format: str, notes: list[str]) -> LoadedImage:
    pixels = _to_uint8(pixels, source_format, notes)
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    channels = pixels.shape[2]
    if channels not in (1, 2, 3, 4):
        raise InvalidImageError(f"An image needs 1 to 4 channels; this one has {channels}.")
    has_alpha = channels in (2, 4)
    colour = pixels[:, :, : channels - 1] if has_alpha else pixels
    alpha = np.ascontiguousarray(pixels[:, :, -1]) if has_alpha else None
    if colour.shape[2] == 1:
        bgr = cv2.cvtColor(np.ascontiguousarray(colour[:, :, 0]), cv2.COLOR_GRAY2BGR)
        is_gray = True
    else:
        bgr = np.ascontiguousarray(colour[:, :, ::-1] if channel_order == "RGB" else colour)
        is_gray = _channel_spread(bgr) <= GRAY_THRESHOLD
    if alpha is not None:
        notes.append("The transparency (alpha channel) was kept.")
    return LoadedImage(bgr=bgr, alpha=alpha, is_gray=is_gray, notes=notes, source_format=source_format)


def _to_uint8(pixels: np.ndarray, source_format: str, notes: list[str]) -> np.ndarray:
    if pixels.size == 0:
        raise InvalidImageError(f"The image has no pixels (shape {pixels.shape}).")
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.bool_:
        return pixels.astype(np.uint8) * 255
    if pixels.dtype == np.uint16:
        notes.append(f"The 16-bit {source_format} was converted to 8-bit.")
        return _from_16_bit(pixels)
    if np.issubdtype(pixels.dtype, np.integer):
        low, high = int(pixels.min()), int(pixels.max())
        if low < 0 or high > 65535:
            raise InvalidImageError(f"Pixel values run from {low} to {high}; integer images must lie in 0-65535.")
        if high <= 255:
            return pixels.astype(np.uint8)
        notes.append(f"The {source_format}'s values up to {high} were read as 16-bit and converted to 8-bit.")
        return _from_16_bit(pixels)
    if np.issubdtype(pixels.dtype, np.floating):
        if not np.isfinite(pixels).all():
            raise InvalidImageError("The image has NaN or infinite pixel values.")
        high = float(pixels.max())
        if high > 255.0:
            raise InvalidImageError(f"Floating-point pixels must lie in 0-1 or 0-255; the largest is {high:g}.")
        full_scale = 1.0 if high <= 1.0 else 255.0
        notes.append(f"Floating-point pixels were read as 0-{full_scale:g} and converted to 8-bit.")
        return np.rint(np.clip(pixels, 0.0, full_scale) * (255.0 / full_scale)).astype(np.uint8)
    raise InvalidImageError(f"Pixels of type {pixels.dtype} are not supported; use uint8, uint16 or float.")


def _from_16_bit(pixels: np.ndarray) -> np.ndarray:
    """Integers in 0-65535 to uint8, rounded to nearest (65535 -> 255, 32896 -> 128, 65280 -> 254)."""
    wide = pixels.astype(np.uint32)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def _channel_spread(bgr: BGRImage) -> float:
    """Official `is_gray` statistic, (var(B-G) + var(G-R) + var(R-B)) / 3.

    Computed as E[(a-b)^2] - (E[a] - E[b])^2 from OpenCV's sums, which are exact for uint8 and need no int16 or
    float64 copies of the image (the whole-array formula took seconds and hundreds of MB on a 12 MP photo).
    """
    count = bgr.shape[0] * bgr.shape[1]
    planes = cv2.split(bgr)
    means = cv2.mean(bgr)[:3]
    variances = [
        cv2.norm(planes[i], planes[j], cv2.NORM_L2SQR) / count - (means[i] - means[j]) ** 2
        for i, j in ((0, 1), (1, 2), (2, 0))
    ]
    return sum(variances) / 3.0
