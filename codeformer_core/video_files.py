"""Video files through the ffmpeg binary of the `imageio-ffmpeg` wheel: probing a container, decoding frames one
at a time, encoding frames to an H.264 mp4 without audio, muxing audio back in.
"""

import subprocess
from collections.abc import Generator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import imageio_ffmpeg
import numpy as np

from .errors import InvalidImageError
from .images import to_rgb
from .layouts import BGRImage

FALLBACK_FPS = Fraction(30)
"""Used when the container states no frame rate (e.g. some browser-recorded webm files)."""
OUTPUT_CRF = 18
"""x264 quality: 18 is commonly taken as visually lossless, so restored detail survives the re-encode."""


_NTSC_BASES = (24, 30, 48, 60, 120)
_STDERR_TAIL_LINES = 4


@dataclass(frozen=True)
class VideoInfo:
    """What the container says. fps is None when it states no rate. size is the width and height of the decoded
    frames (after any rotation the container asks for)."""

    fps: Fraction | None
    size: tuple[int, int]
    duration: float
    has_audio: bool

    @property
    def processing_fps(self) -> Fraction:
        """The rate frames are decoded and written at: the stated one, else FALLBACK_FPS."""
        return self.fps or FALLBACK_FPS

    @property
    def frame_estimate(self) -> int | None:
        """Frames a decode at `processing_fps` gives, from the duration; None when the duration is unknown."""
        if self.duration <= 0:
            return None
        return max(1, round(self.duration * self.processing_fps))


def probe_video(path: Path) -> VideoInfo:
    """Read the container's header; raises InvalidImageError naming the file when it holds no decodable video.

    A container that does not state its duration (browser recordings often do not) is decoded once, without
    processing, to measure it, so that the length limit is checked before any work is done."""
    path = Path(path)
    if not path.is_file():
        raise InvalidImageError(f"The video {path.name!r} does not exist or is not a file.")
    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = _read_header(reader, path)
    finally:
        reader.close()
    duration = float(meta.get("duration") or 0.0)
    if duration <= 0:
        duration = _measure_duration(path)
    return VideoInfo(
        fps=_exact_frame_rate(float(meta.get("fps") or 0.0)),
        size=tuple(meta["size"]),
        duration=duration,
        has_audio="audio_codec" in meta,
    )


class FrameEncoder:
    """Encodes BGR frames into an H.264 (yuv420p) mp4 without audio; opened on the first frame, whose size
    (cut to even sides) it keeps."""

    def __init__(self, path: Path, fps: Fraction) -> None:
        self.path = path
        self.fps = fps
        self.size = (0, 0)
        self._encoder: Any = None

    def write(self, image: BGRImage) -> None:
        frame = _even_sides(image)
        if self._encoder is None:
            self.size = (frame.shape[1], frame.shape[0])
            self._encoder = imageio_ffmpeg.write_frames(
                str(self.path),
                self.size,
                fps=self.fps,
                codec="libx264",
                pix_fmt_out="yuv420p",
                quality=None,
                macro_block_size=2,
                ffmpeg_log_level="error",
                output_params=["-crf", str(OUTPUT_CRF), "-movflags", "+faststart"],
            )
            self._encoder.send(None)
        self._encoder.send(to_rgb(frame))

    def __enter__(self) -> "FrameEncoder":
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._encoder is not None:
            self._encoder.close()


def decoded_frames(source: Path, size: tuple[int, int], fps: Fraction) -> Generator[np.ndarray, None, None]:
    """H x W x 3 uint8 RGB frames, one at a time, resampled to a constant `fps`: a variable-frame-rate phone
    recording then has as many frames as its duration needs at the rate they are written at."""
    width, height = size
    reader = imageio_ffmpeg.read_frames(str(source), output_params=["-fps_mode", "cfr", "-r", str(fps)])
    try:
        _read_header(reader, source)
        while True:
            try:
                raw = next(reader)
            except StopIteration:
                return
            except RuntimeError as error:
                raise InvalidImageError(
                    f"The video {source.name!r} could not be decoded to the end (truncated or damaged?):"
                    f" {_last_lines(str(error))}"
                ) from error
            yield np.frombuffer(raw, np.uint8).reshape(height, width, 3)
    finally:
        reader.close()


def _read_header(reader: Generator[Any, Any, None], path: Path) -> dict[str, Any]:
    """The metadata dict `imageio_ffmpeg.read_frames` yields first, or a user-facing error."""
    try:
        return next(reader)
    except OSError as error:
        reason = _unreadable_reason(str(error))
        raise InvalidImageError(f"Could not read {path.name!r} as a video: {reason}.") from error


def _measure_duration(path: Path) -> float:
    try:
        _, seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
    except RuntimeError as error:
        raise InvalidImageError(
            f"The video {path.name!r} could not be decoded (truncated or damaged?): {_last_lines(str(error))}"
        ) from error
    return float(seconds)


def _unreadable_reason(ffmpeg_log: str) -> str:
    if "No such file or directory" in ffmpeg_log:
        return "the file does not exist"
    if "Input #0" in ffmpeg_log and " Video: " not in ffmpeg_log:
        return "it holds no video stream (an audio-only file?)"
    return "ffmpeg cannot decode it; use an mp4, mov, avi, webm or mkv video"


def mux_audio(video: Path, audio_source: Path, destination: Path, *, seconds: float) -> None:
    """The video stream of `video` (copied) plus every audio stream of `audio_source` (as AAC) into `destination`,
    cut to the video's length `seconds`.

    `-t` rather than `-shortest`: with a copied video stream, ffmpeg 9's `-shortest` keeps only the first video
    packet; `-t` cuts the audio at the video's end and leaves every frame.
    """
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error",
        "-i", str(video), "-i", str(audio_source),
        "-map", "0:v", "-map", "1:a?", "-c:v", "copy", "-c:a", "aac", "-t", f"{seconds:.6f}",
        "-movflags", "+faststart", str(destination),
    ]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise InvalidImageError(
            f"The audio of {audio_source.name!r} could not be copied into the result: {_last_lines(finished.stderr)}"
        )


def _even_sides(image: np.ndarray) -> BGRImage:
    height, width = image.shape[:2]
    return image[: height - height % 2, : width - width % 2, :3]


def _exact_frame_rate(fps: float) -> Fraction | None:
    """ffmpeg prints rates rounded to two decimals; give 29.97 back as 30000/1001 so long videos do not drift."""
    if fps <= 0:
        return None
    for base in _NTSC_BASES:
        ntsc = Fraction(base * 1000, 1001)
        if abs(fps - float(ntsc)) < 0.006:
            return ntsc
    return Fraction(fps).limit_denominator(1001)


def _last_lines(log: str) -> str:
    lines = [line.strip() for line in log.strip().splitlines() if line.strip()]
    return " ".join(lines[-_STDERR_TAIL_LINES:]) or "ffmpeg gave no reason"
