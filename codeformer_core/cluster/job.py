"""An archive job on Ray: `python -m codeformer_core restore|colorize INPUT... -o OUTPUT --ray [ADDRESS]`.

The data path reads as: plan the job's files (what is already done is skipped) -> join or start Ray -> photos as
a stream through a pool of actors (`workers.PhotoWorker`), each output written as it comes back -> each video's
frames through a pool (`workers.FrameWorker`) and back in order into one encoder, then its audio muxed in ->
the JSON summary. This process reads every input and writes every output; the actors only compute. Memory stays
bounded whatever the archive's size: each actor holds one photo or one chunk of frames, Ray Data reads only a
little ahead of them, and this process keeps one result at a time plus the list of paths.

Ray is imported here only when a job runs, so the command line works without it.
"""

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from tqdm import tqdm

from ..errors import CodeFormerError, InvalidOptionError, WeightsError
from ..files import write_report
from ..inputs import nothing_found
from ..layouts import Mask
from ..network.cpu_kernels import decide_cpu_kernels
from ..options import RestoreOptions
from ..settings import Settings
from ..video import VideoResult, check_video, finish_video
from ..video_files import FrameEncoder
from .archive import partial_path, plan_job, remove_leftovers, write_atomically
from .arguments import LOCAL, ActorPlan, check_address, plan_actors
from .summary import JobSummary
from .workers import DONE, STOP, FrameWorker, PhotoWorker

CHUNK_BYTES = 32 * 2**20
"""Default size of the decoded frames sent to an actor at once: a few HD frames, a dozen SD ones."""
MAX_CHUNK_FRAMES = 64
PHOTOS_PER_READ_TASK = 16
READ_TASKS_AT_ONCE = 2


def run_on_cluster(args: argparse.Namespace, options: RestoreOptions, settings: Settings, mask: Mask | None) -> int:
    """The job the command line describes; exit code 0 only when no input failed."""
    ray = _import_ray()
    if args.faces_from:
        raise InvalidOptionError("--faces-from is not supported with --ray; detect the faces, or run without --ray.")
    if args.chunk_frames is not None and args.chunk_frames < 1:
        raise InvalidOptionError(f"--chunk-frames must be at least 1; got {args.chunk_frames}")
    address = check_address(args.ray)
    started = time.perf_counter()
    plan = plan_job(args.inputs, args.output)
    if not (plan.photos or plan.videos or plan.skipped or plan.errors):
        plan.errors.append(nothing_found(args.inputs))
    args.output.mkdir(parents=True, exist_ok=True)
    summary = JobSummary(options.task, str(args.output), skipped=len(plan.skipped), failed=list(plan.errors))
    summary.leftovers_removed = remove_leftovers(args.output)
    for line in plan.errors:
        print(f"error: {line}", file=sys.stderr)
    if settings.cpu_kernels == "auto":
        # Every actor computes with the kernels the probe chose here, whatever its own thread count would pick: a
        # file's result then does not depend on which actor ran it.
        decided = decide_cpu_kernels(settings.cpu_kernels, settings.cpu_kernels_cache).kernels
        settings = dataclasses.replace(settings, cpu_kernels=decided)
    with _connected(ray, address), _unwrapped_engine_errors():
        actors = plan_actors(ray.cluster_resources(), args.actors, args.cpus_per_actor, args.device)
        summary.actors = actors.actors
        job = _Job(ray, actors, {"settings": settings, "options": options, "device": actors.device,
                                 "mask": mask}, summary)  # fmt: skip
        job.restore_photos(plan.photos)
        for source, destination in plan.videos:
            job.restore_video(source, destination, args.chunk_frames)
    summary.seconds = time.perf_counter() - started
    report = summary.to_dict()
    print(json.dumps(report, indent=2))
    if args.json and (unwritten := write_report(args.json, report)):
        print(f"error: {unwritten}", file=sys.stderr)
        return 1
    return 1 if summary.failed else 0


@dataclass
class _Job:
    """One job's Ray, the actors it asks for, what they are built with, and the running summary."""

    ray: ModuleType
    actors: ActorPlan
    worker_arguments: dict[str, Any]
    summary: JobSummary

    def restore_photos(self, photos: list[tuple[Path, Path]]) -> None:
        """Each photo's PNG written as soon as an actor returns it; a photo that fails is a line in the summary."""
        if not photos:
            return
        from .sources import PhotoFiles  # Ray's own classes: importable only once Ray is

        read_tasks = math.ceil(len(photos) / PHOTOS_PER_READ_TASK)
        files = self._read(PhotoFiles([source for source, _ in photos], PHOTOS_PER_READ_TASK), read_tasks)
        outcomes = files.map_batches(PhotoWorker, batch_size=1, **self._actor_arguments())
        summary = self.summary
        with tqdm(total=len(photos), desc=summary.task, unit="image") as bar:
            for outcome in outcomes.iter_rows():
                source, destination = photos[outcome["index"]]
                if outcome["status"] == STOP:
                    raise WeightsError(outcome["message"])
                if outcome["status"] == DONE:
                    try:
                        write_atomically(destination, outcome["png"])
                    except OSError as error:  # a full disk, a folder in its way: the next photo may still fit
                        self._failed(source, _unwritten(destination, error))
                    else:
                        summary.done += 1
                        summary.faces += outcome["faces"]
                        if outcome["found"] == 0 and not self.worker_arguments["options"].aligned:
                            summary.no_face.append(str(source))
                else:
                    self._failed(source, outcome["message"])
                bar.set_postfix(summary.counts(), refresh=False)
                bar.update()

    def restore_video(self, source: Path, destination: Path, chunk_frames: int | None) -> None:
        """The video's frames through the actors and back in order into one encoder, then its audio: the same
        encoder input, frame for frame, as the single-process video path's. A video that fails is a line in the
        summary; the next one still runs."""
        from .sources import VideoFrames  # Ray's own classes: importable only once Ray is

        silent, muxed = partial_path(destination), partial_path(destination)
        try:
            options = self.worker_arguments["options"]
            info = check_video(source, destination, options)
            fps = info.processing_fps
            chunk = chunk_frames or _frames_in_chunk(info.size)
            frames = self._read(VideoFrames(source, info.size, fps, chunk), read_tasks=1)
            restored = frames.map_batches(FrameWorker, batch_size=chunk, **self._actor_arguments())
            restored.context.execution_options.preserve_order = True
            result = VideoResult.for_source(destination, info)
            with (
                FrameEncoder(silent, fps) as encoder,
                tqdm(total=info.frame_estimate, desc=source.name, unit="frame") as bar,
            ):
                for batch in restored.iter_batches(batch_size=None, batch_format="numpy"):
                    for frame, faces, found in zip(batch["frame"], batch["faces"], batch["found"]):
                        encoder.write(frame)
                        result.frames += 1
                        result.faces_restored += int(faces)
                        result.frames_without_faces += int(found == 0)
                    bar.update(len(batch["frame"]))
            result.size = encoder.size
            finish_video(silent, source, muxed, info, result)
            muxed.replace(destination)
        except WeightsError:
            raise  # every video after this one would fail alike
        except CodeFormerError as error:
            self._failed(source, _message(error))
            return
        except OSError as error:
            self._failed(source, _unwritten(destination, error))
            return
        finally:
            silent.unlink(missing_ok=True)
            muxed.unlink(missing_ok=True)
        self.summary.done += 1
        self.summary.faces += result.faces_restored
        self.summary.frames += result.frames

    def _read(self, source: Any, read_tasks: int) -> Any:
        """The dataset of a `sources` datasource, which makes `read_tasks` tasks; a couple run at a time and they
        reserve no CPU (the actors may hold them all)."""
        dataset = self.ray.data.read_datasource(
            source,
            num_cpus=0,
            compute=self.ray.data.TaskPoolStrategy(size=min(read_tasks, READ_TASKS_AT_ONCE)),
            override_num_blocks=read_tasks,
        )
        # Ray Data merges what a read task yields into blocks of up to 128 MB, and an actor takes whole blocks:
        # a block per row (a photo, a frame) is what spreads the work over every actor.
        dataset.context.target_max_block_size = 1
        return dataset

    def _actor_arguments(self) -> dict[str, Any]:
        return {
            "compute": self.ray.data.ActorPoolStrategy(size=self.actors.actors),
            "num_cpus": self.actors.cpus,
            "num_gpus": self.actors.gpus,
            "fn_constructor_kwargs": self.worker_arguments,
            "udf_modifying_row_count": False,
        }

    def _failed(self, source: Path, message: str) -> None:
        line = f"{source}: {message}"
        self.summary.failed.append(line)
        tqdm.write(f"error: {line}", file=sys.stderr)


@contextmanager
def _unwrapped_engine_errors() -> Iterator[None]:
    """An engine error raised in an actor or a read task reaches this process as Ray's wrapper around it (still a
    CodeFormerError, but its message a remote traceback): raised again as itself, with its own one-line message."""
    try:
        yield
    except CodeFormerError as error:
        cause = getattr(error, "cause", None)
        if not isinstance(cause, CodeFormerError):
            raise
        raise type(cause)(_message(error)) from error


def _message(error: CodeFormerError) -> str:
    """The engine's one-line message, also when Ray wrapped the error (and appended its own lines to it)."""
    return str(getattr(error, "cause", None) or error).strip().splitlines()[0]


def _unwritten(destination: Path, error: OSError) -> str:
    return f"the result could not be written to {destination} ({error.strerror or error})"


def _frames_in_chunk(size: tuple[int, int]) -> int:
    return max(1, min(MAX_CHUNK_FRAMES, CHUNK_BYTES // (size[0] * size[1] * 3)))


def _import_ray() -> ModuleType:
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data needs pyarrow and pandas, installed by ray[data]
    except ImportError as error:
        raise InvalidOptionError(
            f"--ray needs Ray Data, an optional extra that is not installed ({error}):"
            " .venv/bin/pip install -r requirements-ray.txt"
        ) from error
    return ray


@contextmanager
def _connected(ray: ModuleType, address: str) -> Iterator[None]:
    """Ray for the job: the connection this process already has (a notebook's, a test's), else a new one that
    ends with the job."""
    if ray.is_initialized():
        yield
        return
    try:
        if address == LOCAL:
            # A cluster of this machine alone: nothing outside it needs to reach it, so it listens on loopback
            # (`_node_ip_address` is among the keyword arguments ray.init documents).
            ray.init(address=LOCAL, include_dashboard=False, _node_ip_address="127.0.0.1")
        else:
            ray.init(address=address, include_dashboard=False)
    except ConnectionError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InvalidOptionError(f"--ray {address}: no Ray cluster could be joined there ({reason}).") from error
    try:
        yield
    finally:
        ray.shutdown()
