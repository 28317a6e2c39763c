"""Videos: clips the tests make themselves (a real photo shifted a little per frame, a sine tone), restored end to
end with the dlib detector and golden-filled CodeFormer weights; the limits and errors on cheap clips."""

import re
import subprocess
import wave
from fractions import Fraction
from pathlib import Path

import cv2
import gradio as gr
import imageio_ffmpeg
import numpy as np
import pytest

from codeformer_core import cli
from codeformer_core.errors import InvalidImageError, InvalidOptionError
from codeformer_core.options import RestoreOptions
from codeformer_core.video import probe_video, restore_video
from demo.outputs import RequestFiles
from demo.video_tab import VideoHandler, build_video_tab, format_duration

from .conftest import SAMPLES
from .test_batch import restore_pipeline, weightless_pipeline

__all__ = ["restore_pipeline", "weightless_pipeline"]  # fixtures, imported for pytest

FPS = 10
CHEAP = RestoreOptions(detector="dlib", parse_paste=False, upscale=1)


def shifted_photo_frames(count: int) -> list[np.ndarray]:
    """`count` BGR frames of whole/03.jpg (one face), each moved 3 px further right, as a slow pan would; cut from
    400x225 to 400x224, since H.264 in yuv420p needs even sides."""
    photo = cv2.imread(str(SAMPLES / "whole" / "03.jpg"))[:224]
    height, width = photo.shape[:2]
    return [
        cv2.warpAffine(photo, np.float32([[1, 0, 3 * i], [0, 1, 0]]), (width, height), borderMode=cv2.BORDER_REPLICATE)
        for i in range(count)
    ]


def faceless_frames(count: int, width: int, height: int) -> list[np.ndarray]:
    """Smooth colour gradients: nothing a face detector could mistake for a face."""
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, axis=0)
    return [np.dstack([ramp, np.full_like(ramp, 40 * i), ramp[:, ::-1]]).astype(np.uint8) for i in range(count)]


def write_tone(path: Path, seconds: float, rate: int = 16000) -> Path:
    samples = 0.3 * np.sin(2 * np.pi * 440.0 * np.arange(int(rate * seconds)) / rate)
    with wave.open(str(path), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes((samples * 32767).astype("<i2").tobytes())
    return path


def write_clip(path: Path, frames: list[np.ndarray], *, audio: bool, **encoder) -> Path:
    """Encode BGR `frames` at FPS (H.264 unless `encoder` says otherwise), with a tone as long as the video."""
    height, width = frames[0].shape[:2]
    tone = write_tone(path.with_suffix(".wav"), len(frames) / FPS) if audio else None
    settings = {"codec": "libx264", "quality": 9, "macro_block_size": 2, **encoder}
    writer = imageio_ffmpeg.write_frames(
        str(path), (width, height), fps=FPS, ffmpeg_log_level="error", audio_path=tone and str(tone),
        audio_codec="aac", **settings,
    )  # fmt: skip
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame[:, :, ::-1]))
    writer.close()
    return path


def decoded_frames(path: Path) -> list[np.ndarray]:
    """Every frame of `path` as BGR uint8, as ffmpeg decodes it."""
    reader = imageio_ffmpeg.read_frames(str(path))
    width, height = next(reader)["size"]
    return [np.frombuffer(raw, np.uint8).reshape(height, width, 3)[:, :, ::-1] for raw in reader]


def audio_stream_count(path: Path) -> int:
    """How many audio streams ffmpeg lists for `path` (its `-i` banner, the way ffprobe would)."""
    banner = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                            capture_output=True, text=True).stderr  # fmt: skip
    return len(re.findall(r"Stream #\d+:\d+.*: Audio: ", banner))


class MustNotRun:
    """Stands in for the pipeline where a check must refuse the video before any frame is processed."""

    def run(self, *args, **kwargs):
        raise AssertionError("a frame was processed although the video should have been refused first")


def test_faces_in_every_frame_are_restored_keeping_rate_audio_and_size(restore_pipeline, tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", shifted_photo_frames(3), audio=True)
    source_frames = decoded_frames(clip)
    calls = []

    result = restore_video(
        clip, tmp_path / "restored.mp4", restore_pipeline, CHEAP, progress=lambda *call: calls.append(call)
    )

    output = tmp_path / "restored.mp4"
    info = probe_video(output)
    restored_frames = decoded_frames(output)
    assert len(source_frames) == 3 and len(restored_frames) == 3
    assert info.fps == Fraction(FPS) and result.fps == FPS
    assert info.has_audio and audio_stream_count(output) == 1
    assert info.size == result.size == (914, 512)  # enlarged to a shorter side of 512, as the official does
    assert (result.frames, result.faces_restored, result.frames_without_faces) == (3, 3, 0)
    assert [call[:2] for call in calls] == [(1, 3), (2, 3), (3, 3), (3, 3)]
    assert calls[0][2] > 0 and calls[-1][2] == 0.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "clip.wav", "restored.mp4"]  # no leftovers

    detector = restore_pipeline.models.detector("dlib")
    for source, restored in zip(source_frames, restored_frames):
        (face,) = detector.detect(np.ascontiguousarray(source))
        factor = 512 / source.shape[0]
        x1, y1, x2, y2 = (face.box * factor).astype(int)
        source = cv2.resize(source, (0, 0), fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
        difference = np.abs(source.astype(int) - restored.astype(int)).mean(axis=2)
        # The golden weights are not trained, so a processed face looks nothing like the input ...
        assert difference[max(y1, 0) : y2, max(x1, 0) : x2].mean() > 15
        # ... while pixels far from the face are the input, up to the two H.264 encodings.
        size = max(x2 - x1, y2 - y1)
        far = np.ones_like(difference, bool)
        far[max(0, y1 - size) : y2 + size, max(0, x1 - size) : x2 + size] = False
        assert far.sum() > 10_000
        assert difference[far].mean() < 3


def test_a_clip_without_faces_or_audio_is_upscaled_and_odd_sides_are_made_even(weightless_pipeline, tmp_path):
    frames = faceless_frames(4, 65, 49)
    clip = write_clip(tmp_path / "odd.mkv", frames, audio=False, codec="ffv1", pix_fmt_out="bgr0", quality=None,
                      macro_block_size=1)  # fmt: skip
    calls = []

    result = restore_video(
        clip, tmp_path / "out.mp4", weightless_pipeline, RestoreOptions(detector="dlib", upscale=2),
        progress=lambda *call: calls.append(call),
    )  # fmt: skip

    restored = decoded_frames(result.output)
    assert (result.frames, result.frames_without_faces, result.faces_restored) == (4, 4, 0)
    assert result.size == (1358, 1024) and restored[0].shape == (1024, 1358, 3)  # 49 px enlarged to 512, then x2
    assert not result.has_audio and audio_stream_count(result.output) == 0
    assert len(restored) == 4 and [call[0] for call in calls] == [1, 2, 3, 4, 4]
    factor = 512 / 49
    enlarged = cv2.resize(frames[2], (0, 0), fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    expected = cv2.resize(enlarged, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)[:, :1358]
    assert np.abs(restored[2].astype(int) - expected.astype(int)).mean() < 4
    assert "no face found" in result.summary()


def test_a_video_over_the_length_limit_is_refused_before_any_frame_is_processed(tmp_path):
    clip = write_clip(tmp_path / "long.mp4", faceless_frames(6, 64, 48), audio=True)
    # Written to a pipe, a Matroska file states no duration (as browser recordings often do): it is measured.
    streamed = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(clip), "-c", "copy", "-f", "matroska", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    (tmp_path / "streamed.mkv").write_bytes(streamed)

    with pytest.raises(InvalidImageError, match=r"'long.mp4' is 0.6 s long, 6 frames; the limit is 0.5 s\."):
        restore_video(clip, tmp_path / "out.mp4", MustNotRun(), CHEAP, max_seconds=0.5)
    with pytest.raises(InvalidImageError, match=r"the limit is 5 frames\."):
        restore_video(clip, tmp_path / "out.mp4", MustNotRun(), CHEAP, max_frames=5)
    with pytest.raises(InvalidImageError, match=r"'streamed.mkv' is 0.6 s long, 6 frames; the limit is 0.5 s\."):
        restore_video(tmp_path / "streamed.mkv", tmp_path / "out.mp4", MustNotRun(), CHEAP, max_seconds=0.5)
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"just some text, renamed to .mp4\n" * 20, "ffmpeg cannot decode it"),
        (None, "it holds no video stream"),
    ],
    ids=["text renamed .mp4", "audio only"],
)
def test_an_unreadable_video_gets_a_clear_error(tmp_path, content, reason):
    path = tmp_path / "movie.mp4"
    if content is None:
        write_tone(tmp_path / "tone.wav", 0.5).rename(path)
    else:
        path.write_bytes(content)

    with pytest.raises(InvalidImageError, match=rf"Could not read 'movie.mp4' as a video: {reason}"):
        restore_video(path, tmp_path / "out.mp4", MustNotRun(), CHEAP)


def test_options_that_make_no_sense_for_a_video_are_refused(tmp_path):
    clip = tmp_path / "clip.mp4"
    with pytest.raises(InvalidOptionError, match="aligned"):
        restore_video(clip, tmp_path / "out.mp4", MustNotRun(), RestoreOptions(aligned=True))
    with pytest.raises(InvalidOptionError, match="inpaint"):
        restore_video(clip, tmp_path / "out.mp4", MustNotRun(), RestoreOptions(task="inpaint"))
    with pytest.raises(InvalidOptionError, match="overwrite the input"):
        restore_video(clip, clip, MustNotRun(), CHEAP)


def test_cli_writes_a_video_input_as_stem_mp4(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "videos"
    folder.mkdir()
    write_clip(folder / "holiday.mov", faceless_frames(3, 64, 48), audio=True)
    (folder / "holiday.wav").unlink()

    code = cli.main(
        ["restore", str(folder), "-o", str(tmp_path / "out"), "--detector", "dlib", "--no-parse", "-s", "1",
         "--weights-dir", str(tmp_path / "no-weights"), "--device", "cpu"]
    )  # fmt: skip

    printed = capsys.readouterr()
    assert code == 0, printed.err
    output = tmp_path / "out" / "holiday.mp4"
    assert len(decoded_frames(output)) == 3 and audio_stream_count(output) == 1
    assert f"-> {output} (3 frames, 0 face(s))" in printed.out


def test_the_video_tab_serves_video_and_shows_the_limit_as_an_error(weightless_pipeline, tmp_path):
    with gr.Blocks() as page:
        build_video_tab(weightless_pipeline, RequestFiles(), max_seconds=60.0)
    assert "video" in {fn.api_name for fn in page.fns.values()}
    clip = write_clip(tmp_path / "party.webm", faceless_frames(6, 64, 48), audio=False, codec="libvpx-vp9",
                      quality=None)  # fmt: skip
    handler = VideoHandler(weightless_pipeline, RequestFiles(), max_seconds=0.5)
    settings = ("restore", 0.5, 1, False, False, "dlib", False)

    with pytest.raises(gr.Error, match=r"'party.webm' is 0.6 s long, 6 frames; the limit is 0.5 s"):
        handler.run(str(clip), *settings)
    with pytest.raises(gr.Error, match="Upload a video first"):
        handler.run(None, *settings)


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "0 s"), (45, "45 s"), (130.2, "2 min 10 s"), (7300, "2 h 1 min")])
def test_time_left_reads_naturally(seconds, text):
    assert format_duration(seconds) == text
