"""The whole-photo pipeline on the device with the faces given (dlib cannot be installed there: the landmarks our
CPU run found are in faces-00.json), and whether it stays resident between requests.

Each timed first run gets an image the pipeline has not seen (one pixel of the photo's corner changed), so
nothing of an earlier run is reused; the new-fidelity run right after it reuses what the app's slider would.
"""

import json
import resource
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import torch

from .engine import (
    DetectedFace,
    DeviceError,
    LoadedImage,
    OverflowEvents,
    Pipeline,
    RestoreOptions,
    RestoreRequest,
    cuda_graph_passes,
    faces_from_report,
    overflow_events,
    read_image,
)
from .plan import Context
from .report import CUDA_ONLY, FIDELITY_TARGET_MS, PHOTO_TARGET_MS, Result, below_result, no_candidate
from .timing import counted, peak_memory_mb, reset_peak_memory, swapped, time_once

FIDELITY = 0.5  # the official default w
NEW_FIDELITY = 0.8  # the slider moved after a run
UPSCALE = 2  # the official default; background resized, no upsampler (as the CPU bench)
OOM_CAP_SHARE = 0.6
"""The probe's memory cap: what the pipeline held before, plus this share of what a float32 run of all faces
added: a batch of every face cannot fit, one face at a time can."""


@dataclass(frozen=True)
class _Resident:
    """Which model objects the pipeline hands out, where their weights live, and on which device."""

    objects: tuple[int, int]
    """id() of the network and of the parser."""
    network_weights: int
    """Address of the network's first weight tensor: a model moved or reloaded gets a new one."""
    device: str


def run_photo(ctx: Context) -> None:
    pipeline: Pipeline = ctx.pipeline
    image = read_image(ctx.inputs.photo)
    faces = _given_faces(ctx)
    variants = (image_variant(image, index) for index in range(1, 256))
    before = _resident(pipeline)
    with counted(torch.cuda, "empty_cache") as empty_cache_calls:
        memory = {mode: _photo_mode(ctx, pipeline, variants, faces, mode) for mode in ctx.scale.photo_modes}
        candidate = ctx.scale.candidate
        if ctx.measures_candidate:
            with swapped(pipeline, "fast_precision", candidate):  # fast mode decodes and parses at the candidate
                memory[candidate] = _photo_mode(ctx, pipeline, variants, faces, candidate)
        else:
            for row in ("first", "fidelity"):
                ctx.results[f"photo/{candidate}/{row}"] = no_candidate(candidate)
        if ctx.on_gpu:
            with cuda_graph_passes(pipeline.models.codeformer("restore")):
                memory["graphs"] = _photo_mode(ctx, pipeline, variants, faces, "graphs")
        else:
            for row in ("first", "fidelity", "memory"):
                ctx.results[f"photo/graphs/{row}"] = CUDA_ONLY
    after = _resident(pipeline)
    stayed = before == after and after.device == ctx.device.type and not empty_cache_calls
    requests = sum(numbers["requests"] for numbers in memory.values())
    allocated = ", ".join(f"{numbers['allocated_mb']:.0f} MiB after {mode}" for mode, numbers in memory.items())
    ctx.results["photo/resident"] = Result(
        "", "yes" if stayed else "NO", "", "pass" if stayed else "FAIL",
        f"same network and parser objects: {before.objects == after.objects}; network weights never moved: "
        f"{before.network_weights == after.network_weights}; on {after.device}; torch.cuda.empty_cache calls "
        f"during {requests} requests: {len(empty_cache_calls)}; allocated: {allocated}")
    ctx.results["photo/oom"] = _oom_probe(ctx, pipeline, next(variants), faces, memory)


def _given_faces(ctx: Context) -> list[DetectedFace]:
    records = json.loads(ctx.inputs.faces.read_text())["faces"]
    return faces_from_report(records, str(ctx.inputs.faces))[: ctx.scale.photo_faces]


def image_variant(image: LoadedImage, index: int) -> LoadedImage:
    """The photo with its top-left pixel's blue value moved by `index`: a new image to the pipeline's cache."""
    pixels = image.bgr.copy()
    pixels[0, 0, 0] = (int(pixels[0, 0, 0]) + index) % 256
    return replace(image, bgr=pixels)


def _photo_mode(ctx: Context, pipeline: Pipeline, variants: Iterator[LoadedImage], faces: list[DetectedFace],
                mode: str) -> dict[str, float]:
    """Whole-photo rows of `mode`: "float32", "fast", the candidate precision or "graphs" (both fast mode, set up by
    the caller)."""
    options = RestoreOptions(fidelity=FIDELITY, upscale=UPSCALE, background="none", exact=mode == "float32")
    again = replace(options, fidelity=NEW_FIDELITY)
    reset_peak_memory(ctx.device)
    start_mb = _allocated_mb(ctx.device)
    firsts, agains, problems = [], [], set()
    first_events, again_events = OverflowEvents(), OverflowEvents()
    for index in range(ctx.scale.warmup + ctx.scale.repeats):
        if firsts and ctx.deadline.left() < 3 * (firsts[-1] + agains[-1]):
            break
        ctx.deadline.require(5, f"whole photo, {mode}")
        image = next(variants)
        with overflow_events() as events:
            request = RestoreRequest(image, options, faces=faces)
            first, first_seconds = time_once(partial(pipeline.run, request), ctx.device)
        first_events.extend(events)
        with overflow_events() as events:
            request = RestoreRequest(image, again, faces=faces)
            second, again_seconds = time_once(partial(pipeline.run, request), ctx.device)
        again_events.extend(events)
        if first.report.reused:
            problems.add(f"a first run reused {', '.join(first.report.reused)}")
        if first.report.faces_restored != len(faces):
            problems.add(f"{first.report.faces_restored} of {len(faces)} faces restored")
        if index >= ctx.scale.warmup:
            firsts.append(first_seconds)
            agains.append(again_seconds)
    peak = peak_memory_mb(ctx.device)
    first_ms, again_ms = 1000 * float(np.median(firsts)), 1000 * float(np.median(agains))
    stages = ", ".join(f"{name} {1000 * seconds:.1f}" for name, seconds in first.report.timings.items())
    again_stages = ", ".join(f"{name} {1000 * seconds:.1f}" for name, seconds in second.report.timings.items())
    size = "x".join(map(str, first.report.output_size))
    issues = f"; PROBLEM: {'; '.join(sorted(problems))}" if problems else ""
    ctx.results[f"photo/{mode}/first"] = below_result(
        first_ms, PHOTO_TARGET_MS,
        f"{len(faces)} face(s) given, upscale {UPSCALE} to {size}, median of {len(firsts)}; stages of the last run "
        f"(ms; stage clocks do not wait for the GPU): {stages}{_overflow_note(first_events, index + 1)}{issues}")
    ctx.results[f"photo/{mode}/fidelity"] = below_result(
        again_ms, FIDELITY_TARGET_MS, f"w {FIDELITY} -> {NEW_FIDELITY}; reused: {', '.join(second.report.reused)}; "
        f"stages (ms): {again_stages}{_overflow_note(again_events, index + 1)}")
    ctx.results[f"photo/{mode}/memory"] = _memory_result(peak, start_mb)
    end_mb = _allocated_mb(ctx.device)
    ctx.numbers.setdefault("photo", {})[mode] = {
        "first_s": firsts, "again_s": agains, "peak_gpu_mb": peak, "start_mb": start_mb, "allocated_mb": end_mb,
        "requests": 2 * (index + 1), "stages": first.report.timings, "stages_again": second.report.timings,
    }
    return ctx.numbers["photo"][mode]


def _overflow_note(events: OverflowEvents, runs: int) -> str:
    note = events.describe()
    return f"{note} (over {runs} runs; the golden-fill weights overflow fp16 at high w)" if note else ""


def _memory_result(peak: float | None, start_mb: float) -> Result:
    if peak is None:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return Result(verdict="n/a", notes=f"CPU run; the process's peak RSS so far {rss:.0f} MB")
    return Result("", f"{peak:.0f} MiB", "", "info",
                  f"torch.cuda.max_memory_allocated; {start_mb:.0f} MiB held before (models, cached images)")


def _resident(pipeline: Pipeline) -> _Resident:
    network, parser = pipeline.models.codeformer("restore"), pipeline.models.parser()
    weights = next(network.parameters())
    return _Resident((id(network), id(parser)), weights.data_ptr(), weights.device.type)


def _oom_probe(ctx: Context, pipeline: Pipeline, image: LoadedImage, faces: list[DetectedFace],
               memory: dict[str, dict[str, float]]) -> Result:
    """One float32 run of every face under a memory cap a batch of all of them cannot fit in."""
    if not ctx.on_gpu or "float32" not in memory:
        return Result(verdict="n/a", notes="needs CUDA and the float32 photo runs")
    float32 = memory["float32"]
    torch.cuda.empty_cache()
    held = torch.cuda.memory_allocated(ctx.device) / 2**20
    cap_mb = held + OOM_CAP_SHARE * (float32["peak_gpu_mb"] - float32["start_mb"])
    total_mb = torch.cuda.get_device_properties(ctx.device).total_memory / 2**20
    # The cap takes a device index: "cuda" without one is refused.
    index = ctx.device.index if ctx.device.index is not None else torch.cuda.current_device()
    torch.cuda.set_per_process_memory_fraction(cap_mb / total_mb, index)
    options = RestoreOptions(fidelity=FIDELITY, upscale=UPSCALE, background="none")
    setting = f"cap {cap_mb:.0f} MiB ({held:.0f} held + {OOM_CAP_SHARE:g} x a float32 run's peak increase)"
    try:
        # The engine frees the device's cache exactly when it catches an out-of-memory and retries smaller.
        with counted(torch.cuda, "empty_cache") as retries:
            result, seconds = time_once(partial(pipeline.run, RestoreRequest(image, options, faces=faces)), ctx.device)
    except DeviceError as error:
        return Result("", "failed", "", "FAIL", f"{setting}: {error}")
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, index)
    restored = result.report.faces_restored
    notes = f"{setting}: {restored} of {len(faces)} faces restored, {len(retries)} out-of-memory retries"
    if not retries:
        return Result("", f"{1000 * seconds:.0f} ms", "", "info", notes + " (the cap was not tight enough to test)")
    return Result("", f"{1000 * seconds:.0f} ms", "", "pass" if restored == len(faces) else "FAIL", notes)


def _allocated_mb(device: torch.device) -> float:
    return torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
