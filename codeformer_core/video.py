"""Videos: every frame through the photo pipeline, the original frame rate and audio kept, an H.264 mp4 out.

The data path reads as: probe the source -> check the length limit -> stream frames (one decoded frame in memory
at a time) -> restore each -> encode to a silent mp4 -> mux the source's audio back in. Decoding and encoding use
the ffmpeg binary that the `imageio-ffmpeg` wheel ships (`video_files`), so nothing outside PyPI is needed.
"""

import math
import time
import uuid
from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from .errors import InvalidImageError, InvalidOptionError
from .images import LoadedImage, read_image_array
from .options import RestoreOptions
from .pipeline import ImageRestorer, RestoreRequest
from .report import Report
from .video_files import FrameEncoder, VideoInfo, decoded_frames, mux_audio, probe_video

VideoProgress = Callable[[int, int | None, float | None], None]
"""progress(frames done, frames in total (None when unknown), estimated seconds left (None when unknown))."""


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

    @classmethod
    def for_source(cls, output: Path, info: VideoInfo) -> "VideoResult":
        """An empty result for the video `info` describes, noting a frame rate it had to assume."""
        result = cls(output, float(info.processing_fps), info.has_audio)
        if info.fps is None:
            result.notes.append(
                f"The video states no frame rate; it was read and written at {info.processing_fps} fps."
            )
        return result

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
    info = check_video(source, destination, options, max_seconds=max_seconds, max_frames=max_frames)
    fps = info.processing_fps
    frame_limit = _frame_limit(fps, max_seconds, max_frames)
    result = VideoResult.for_source(destination, info)
    silent = destination.with_name(f".{destination.stem}-{uuid.uuid4().hex}.video.mp4")
    started = time.perf_counter()
    try:
        # closing(): a failure mid-video stops the decoding ffmpeg now, not when the traceback is collected.
        with FrameEncoder(silent, fps) as writer, closing(decoded_frames(source, info.size, fps)) as frames:
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
        result.size = writer.size
        finish_video(silent, source, destination, info, result)
        if progress is not None:
            progress(result.frames, result.frames, 0.0)
    finally:
        silent.unlink(missing_ok=True)
    result.seconds = time.perf_counter() - started
    return result


def check_video(
    source: Path,
    destination: Path,
    options: RestoreOptions,
    *,
    max_seconds: float | None = None,
    max_frames: int | None = None,
) -> VideoInfo:
    """What every video run checks before processing a frame: options that apply to videos, a destination that is
    not the source, a readable video within the limits. Returns what its container says."""
    _check_video_options(options, max_seconds, max_frames)
    if Path(destination).resolve() == Path(source).resolve():
        raise InvalidOptionError(f"The output {destination} would overwrite the input video; choose another folder.")
    info = probe_video(source)
    _check_length(info, Path(source).name, max_seconds, max_frames)
    return info


def finish_video(silent: Path, source: Path, destination: Path, info: VideoInfo, result: VideoResult) -> None:
    """The restored frames' silent encode becomes `destination`, with the source's audio when it has any."""
    if result.frames == 0:
        raise InvalidImageError(f"The video {source.name!r} has no frames that could be decoded.")
    if info.has_audio:
        mux_audio(silent, source, destination, seconds=float(result.frames / info.processing_fps))
    else:
        silent.replace(destination)


def _restore_frames(
    restorer: ImageRestorer,
    frames: list[LoadedImage],
    options: RestoreOptions,
    writer: FrameEncoder,
    result: VideoResult,
    info: VideoInfo,
    started: float,
    progress: VideoProgress | None,
) -> None:
    """One call's worth of frames through the restorer, written in order."""
    if not frames:
        return
    for restored in restorer.run_many([RestoreRequest(frame, options) for frame in frames]):
        writer.write(restored.image)
        result.add_frame(restored.report)
        if progress is not None:
            total = max(info.frame_estimate, result.frames) if info.frame_estimate else None
            progress(result.frames, total, _seconds_left(started, result.frames, total))


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
