"""Videos: every frame through the photo pipeline, the original frame rate and audio kept, an H.264 mp4 out.

The data path reads as: probe the source -> check the length limit -> stream frames (one decoded frame in memory
at a time) -> restore each -> encode to a silent mp4 -> mux the source's audio back in. Decoding and encoding use
the ffmpeg binary that the `imageio-ffmpeg` wheel ships, so nothing outside PyPI is needed.
"""

import math
import subprocess
import time
import uuid
from collections.abc import Callable, Generator
from contextlib import closing
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import imageio_ffmpeg
import numpy as np

from .errors import InvalidImageError, InvalidOptionError
from .images import LoadedImage, read_image_array, to_rgb
from .layouts import BGRImage
from .options import RestoreOptions
from .pipeline import ImageRestorer
from .report import Report

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".webm", ".mkv"})
FALLBACK_FPS = Fraction(30)
"""Used when the container states no frame rate (e.g. some browser-recorded webm files)."""
OUTPUT_CRF = 18
"""x264 quality: 18 is commonly taken as visually lossless, so restored detail survives the re-encode."""

VideoProgress = Callable[[int, int | None, float | None], None]
"""progress(frames done, frames in total (None when unknown), estimated seconds left (None when unknown))."""

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
    codec: str

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


@dataclass
class VideoResult:
    """output: the mp4 written; size: its width and height; fps: its frame rate (the source's)."""

    output: Path
    fps: float
    has_audio: bool
    frames: int = 0
    size: tuple[int, int] = (0, 0)
    faces_restored: int = 0
    frames_without_faces: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def add_frame(self, report: Report) -> None:
        self.frames += 1
        self.faces_restored += report.faces_restored
        if not report.faces:
            self.frames_without_faces += 1

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["output"] = str(self.output)
        data["seconds"] = round(self.seconds, 2)
        return data

    def summary(self) -> str:
        audio = "with its audio" if self.has_audio else "no audio track"
        lines = [
            f"{self.frames} frames at {self.fps:g} fps ({self.size[0]}x{self.size[1]}, {audio})"
            f" in {self.seconds:.0f} s;"
            f" {self.faces_restored} face(s) processed in total."
        ]
        if self.frames_without_faces:
            lines.append(f"{self.frames_without_faces} frame(s) had no face found and were only upscaled.")
        lines.extend(self.notes)
        return "\n".join(lines)


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
        codec=str(meta.get("codec", "")),
    )


def restore_video(
    source: Path,
    destination: Path,
    restorer: ImageRestorer,
    options: RestoreOptions,
    *,
    progress: VideoProgress | None = None,
    max_seconds: float | None = None,
    max_frames: int | None = None,
) -> VideoResult:
    """Restore the faces of every frame of `source` with the same options and write an H.264 mp4 to `destination`.

    The frame rate and the audio (re-encoded to AAC) are the source's; a frame with no face is only upscaled. Frames
    are decoded, processed (`restorer.frames_per_call` at a time: one for a Pipeline) and encoded in order, so
    memory does not grow with the video's length. Odd output sides lose their last row or column, since H.264 in
    yuv420p needs even sides. Raises InvalidImageError for an
    unreadable video or one longer than max_seconds / max_frames, InvalidOptionError for options that do not apply
    to videos.
    """
    source, destination = Path(source), Path(destination)
    _check_video_options(options, max_seconds, max_frames)
    if destination.resolve() == source.resolve():
        raise InvalidOptionError(f"The output {destination} would overwrite the input video; choose another folder.")
    info = probe_video(source)
    _check_length(info, source.name, max_seconds, max_frames)
    fps = info.processing_fps
    frame_limit = _frame_limit(fps, max_seconds, max_frames)
    result = VideoResult(destination, float(fps), info.has_audio)
    if info.fps is None:
        result.notes.append(f"The video states no frame rate; it was read and written at {fps} fps.")
    silent = destination.with_name(f".{destination.stem}-{uuid.uuid4().hex}.video.mp4")
    started = time.perf_counter()
    try:
        # closing(): a failure mid-video stops the decoding ffmpeg now, not when the traceback is collected.
        with _SilentMp4Writer(silent, fps) as writer, closing(_decoded_frames(source, info.size, fps)) as frames:
            per_call = restorer.frames_per_call(info.size, options)
            pending: list[LoadedImage] = []
            for index, rgb in enumerate(frames):
                if frame_limit is not None and index >= _with_grace(frame_limit, fps):
                    raise InvalidImageError(
                        f"The video {source.name!r} runs longer than its header says, past the limit of"
                        f" {_limit_text(max_seconds, max_frames)}. Trim it and try again."
                    )
                pending.append(read_image_array(rgb, channel_order="RGB"))
                if len(pending) == per_call:
                    _restore_frames(restorer, pending, options, writer, result, info, started, progress)
                    pending = []
            _restore_frames(restorer, pending, options, writer, result, info, started, progress)
        if result.frames == 0:
            raise InvalidImageError(f"The video {source.name!r} has no frames that could be decoded.")
        if progress is not None:
            progress(result.frames, result.frames, 0.0)
        result.size = writer.size
        if info.has_audio:
            _mux_audio(silent, source, destination, seconds=float(result.frames / fps))
        else:
            silent.replace(destination)
    finally:
        silent.unlink(missing_ok=True)
    result.seconds = time.perf_counter() - started
    return result


def _restore_frames(
    restorer: ImageRestorer,
    frames: list[LoadedImage],
    options: RestoreOptions,
    writer: "_SilentMp4Writer",
    result: VideoResult,
    info: VideoInfo,
    started: float,
    progress: VideoProgress | None,
) -> None:
    """One call's worth of frames through the restorer, written in order."""
    if not frames:
        return
    for restored in restorer.run_many(frames, options):
        writer.write(restored.image)
        result.add_frame(restored.report)
        if progress is not None:
            total = max(info.frame_estimate, result.frames) if info.frame_estimate else None
            progress(result.frames, total, _seconds_left(started, result.frames, total))


class _SilentMp4Writer:
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

    def __enter__(self) -> "_SilentMp4Writer":
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._encoder is not None:
            self._encoder.close()


def _decoded_frames(source: Path, size: tuple[int, int], fps: Fraction) -> Generator[np.ndarray, None, None]:
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


def _mux_audio(video: Path, audio_source: Path, destination: Path, *, seconds: float) -> None:
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


def _check_video_options(options: RestoreOptions, max_seconds: float | None, max_frames: int | None) -> None:
    if options.aligned:
        raise InvalidOptionError("aligned applies to 512x512 face crops, not to videos; turn it off for a video.")
    if options.task == "inpaint":
        raise InvalidOptionError("inpaint needs a mask per picture; videos support the restore and colorize tasks.")
    if options.chooses_faces:
        raise InvalidOptionError("Face-by-face choices apply to photos: a video's faces are numbered anew per frame.")
    if max_seconds is not None and not max_seconds > 0:
        raise InvalidOptionError(f"max_seconds must be positive; got {max_seconds!r}")
    if max_frames is not None and not max_frames > 0:
        raise InvalidOptionError(f"max_frames must be positive; got {max_frames!r}")


def _frame_limit(fps: Fraction, max_seconds: float | None, max_frames: int | None) -> int | None:
    """The stricter of the two limits, in frames at the rate the video is processed at."""
    limits = [max_frames, None if max_seconds is None else math.floor(max_seconds * fps + 1e-9)]
    return min((limit for limit in limits if limit is not None), default=None)


def _with_grace(frame_limit: int, fps: Fraction) -> int:
    """While streaming, allow one second more than the limit: a duration rounded in the header must not make a
    video that passed the check fail after all its frames were processed."""
    return frame_limit + math.ceil(fps)


def _check_length(info: VideoInfo, name: str, max_seconds: float | None, max_frames: int | None) -> None:
    """Refuse a video whose length is over a limit before any frame is processed."""
    over_seconds = max_seconds is not None and info.duration > max_seconds
    over_frames = max_frames is not None and (info.frame_estimate or 0) > max_frames
    if over_seconds or over_frames:
        frames = f", {info.frame_estimate} frames" if info.frame_estimate else ""
        raise InvalidImageError(
            f"The video {name!r} is {info.duration:.1f} s long{frames}; the limit is"
            f" {_limit_text(max_seconds, max_frames)}. Trim it and try again."
        )


def _limit_text(max_seconds: float | None, max_frames: int | None) -> str:
    limits = [f"{max_seconds:g} s" if max_seconds is not None else "", f"{max_frames} frames" if max_frames else ""]
    return " and ".join(limit for limit in limits if limit)


def _seconds_left(started: float, done: int, total: int | None) -> float | None:
    if total is None:
        return None
    return (time.perf_counter() - started) / done * (total - done)


def _last_lines(log: str) -> str:
    lines = [line.strip() for line in log.strip().splitlines() if line.strip()]
    return " ".join(lines[-_STDERR_TAIL_LINES:]) or "ffmpeg gave no reason"
