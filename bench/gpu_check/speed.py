"""Per-face latency of our network, as the engine runs it and with the speed options the engine does not use yet.

- latency: the pipeline's own network (default layout on CUDA), through the engine's `encode_faces` /
  `decode_faces` (uint8 crops in, uint8 crops out, like the reference path's per-face call), float32 and fast
  mode, one pass per batch; per face = the batch's median time / its faces.
- the same in fast mode with the network's passes replayed from CUDA graphs (candidates/cuda_graphs.py; CUDA only),
  each batch also checked on other faces against eager;
- fast mode with the Triton GroupNorm kernels and a channels_last decoder (candidates/triton_group_norm.py, not the
  engine's default), eager and replaying CUDA graphs (CUDA only);
- speed options (CUDA only): the same network on tensors, eager against cudnn.benchmark, so the table says whether
  it would help and by how much.
"""

from collections.abc import Callable
from dataclasses import replace
from functools import partial

import numpy as np
import torch

from .engine import (
    CodeFormer,
    crops_to_tensor,
    cuda_graph_passes,
    decode_faces,
    encode_faces,
    overflow_events,
    reduced_precision,
    triton_network,
    triton_norms_problem,
)
from .plan import Context
from .report import CUDA_ONLY, SPEEDUP_TARGET, TRITON_MODES, Result, no_candidate, ratio_result
from .timing import Series, peak_memory_mb, reset_peak_memory, series, swapped

FIDELITY = 0.5
GRAPH_PIXEL_BOUND = 1
"""Grey levels a replay's faces may differ from eager's by: it runs eager's kernels, and w = 0.5 is exact in every
precision; more means it replayed something else (a stale input, a freed buffer)."""


class NotApplicable(Exception):
    """The section does not apply on this device; its rows say why."""


def run_latency(ctx: Context) -> None:
    """float32 and fast mode through the engine, then fast mode at the candidate precision, then fast mode replaying
    CUDA graphs, then with the Triton GroupNorm kernels."""
    net = ctx.pipeline.models.codeformer("restore")
    fast = ctx.pipeline.fast_precision
    _latency_rows(ctx, net, "float32", "float32")
    _latency_rows(ctx, net, "fast", fast)
    candidate = ctx.scale.candidate
    if not ctx.measures_candidate:
        for batch in ctx.scale.batches:
            ctx.results[f"latency/{candidate}/b{batch}"] = no_candidate(candidate)
    else:
        _latency_rows(ctx, net, candidate, candidate)
    if not ctx.on_gpu:
        for mode in ("graphs", *TRITON_MODES):
            for batch in ctx.scale.batches:
                ctx.results[f"latency/{mode}/b{batch}"] = CUDA_ONLY
        return
    mirrored = {batch: [np.ascontiguousarray(face[:, ::-1]) for face in ctx.faces(batch)]
                for batch in ctx.scale.batches}
    eager = {batch: _through_engine(net, faces, fast) for batch, faces in mirrored.items()}
    _graph_rows(ctx, net, "graphs", fast, mirrored, eager)
    _triton_rows(ctx, net, fast, mirrored, eager)


def _graph_rows(ctx: Context, net: CodeFormer, mode: str, precision: str, mirrored: dict[int, list],
                eager: dict[int, list]) -> None:
    """`mode`'s rows of `net` replaying CUDA graphs, each checked on the mirrored faces against `eager`."""
    with cuda_graph_passes(net) as passes:
        _latency_rows(ctx, net, mode, precision)
        for batch, faces in mirrored.items():
            ctx.results[f"latency/{mode}/b{batch}"] = _replay_checked(
                ctx.results[f"latency/{mode}/b{batch}"], _through_engine(net, faces, precision), eager[batch],
                passes.recorded)


def _triton_rows(ctx: Context, net: CodeFormer, precision: str, mirrored: dict[int, list],
                 engine_faces: dict[int, list]) -> None:
    """Fast mode with the Triton GroupNorm kernels and a channels_last decoder, eager and replaying CUDA graphs;
    the eager rows say how far their faces land from the engine's fast mode on the mirrored faces."""
    problem = triton_norms_problem()
    if problem is not None:
        for mode in TRITON_MODES:
            for batch in ctx.scale.batches:
                ctx.results[f"latency/{mode}/b{batch}"] = Result(verdict="n/a", notes=problem)
        return
    triton_net = triton_network(net, channels_last=True)
    _latency_rows(ctx, triton_net, "triton", precision)
    triton_eager = {batch: _through_engine(triton_net, faces, precision) for batch, faces in mirrored.items()}
    for batch, faces in triton_eager.items():
        gaps = _grey_level_gaps(faces, engine_faces[batch])
        result = ctx.results[f"latency/triton/b{batch}"]
        ctx.results[f"latency/triton/b{batch}"] = replace(
            result, notes=f"{result.notes}; faces vs the engine's fast mode on other faces: mean "
                          f"{gaps.mean():.2f}, max {gaps.max()} grey levels")
    _graph_rows(ctx, triton_net, "triton-graphs", precision, mirrored, triton_eager)


def _replay_checked(result: Result, replayed: list, eager: list, recorded: int) -> Result:
    """A graphs row with how far a replay on other faces (recorded on the golden inputs, replayed on their mirror
    images) landed from eager on them, and how many passes the network holds recorded (a pass whose recording
    failed runs eagerly, with a warning in the log)."""
    gap = int(_grey_level_gaps(replayed, eager).max())
    verdict = "FAIL" if gap > GRAPH_PIXEL_BOUND else result.verdict
    return replace(result, verdict=verdict,
                   notes=f"{result.notes}; a replay on other faces vs eager on them: max {gap} grey levels; "
                   f"{recorded} passes recorded so far")


def _grey_level_gaps(faces: list, others: list) -> np.ndarray:
    """Every pixel's absolute difference between two lists of uint8 faces, flattened."""
    return np.concatenate([np.abs(a.astype(np.int16) - b.astype(np.int16)).ravel()
                           for a, b in zip(faces, others, strict=True)])


def _latency_rows(ctx: Context, net: CodeFormer, mode: str, precision: str) -> None:
    """Per-face rows of `mode`, the decoder at `precision` (the encoder runs float32, as the engine's always does)."""
    for batch in ctx.scale.batches:
        reset_peak_memory(ctx.device)
        network = partial(_through_engine, net, ctx.faces(batch), precision)
        with overflow_events() as events:
            timing = _series(ctx, network, f"latency, {mode}, batch {batch}")
        per_face = timing.median_ms / batch
        peak = peak_memory_mb(ctx.device)
        ctx.numbers.setdefault("latency", {})[f"{mode}/b{batch}"] = {"seconds": timing.seconds, "peak_gpu_mb": peak}
        target = SPEEDUP_TARGET if mode != "float32" and batch > 1 else None
        memory = f", peak GPU memory {peak:.0f} MiB" if peak is not None else ""
        ctx.results[f"latency/{mode}/b{batch}"] = ratio_result(
            ctx.reference_ms, per_face, target,
            f"{precision}; batch {timing.median_ms:.1f} ms, median of {len(timing.seconds)} (spread "
            f"{timing.spread:.0%}){memory}{events.describe()}")


def run_speed_options(ctx: Context) -> None:
    if not ctx.on_gpu:
        raise NotApplicable("CUDA only")
    net = ctx.pipeline.models.codeformer("restore")
    precision = reduced_precision(ctx.device)
    for batch in ctx.scale.batches:
        x = crops_to_tensor(ctx.faces(batch), ctx.device)
        eager = partial(_on_tensors, net, x, precision)
        baseline = _series(ctx, eager, f"eager, batch {batch}").median_ms / batch
        with swapped(torch.backends.cudnn, "benchmark", True):
            tuned = _series(ctx, eager, f"cudnn.benchmark, batch {batch}").median_ms / batch
        ctx.results[f"options/benchmark/b{batch}"] = ratio_result(
            baseline, tuned, None, "baseline: eager on tensors, cudnn.benchmark off (torch's default)",
            " eager")


def _through_engine(net: CodeFormer, crops: list, precision: str) -> list:
    """The pipeline's network stage: uint8 crops in one batch, encoded and decoded at FIDELITY and `precision`,
    uint8 crops out."""
    encoded = encode_faces(net, crops, adain=True, batch=len(crops))
    return decode_faces(net, encoded, fidelity=FIDELITY, precision=precision, batch=len(crops))


def _on_tensors(net: CodeFormer, x: torch.Tensor, precision: str) -> torch.Tensor:
    return net.decode(net.encode(x, precision="float32"), FIDELITY, precision=precision)


def _series(ctx: Context, work: Callable[[], object], what: str) -> Series:
    return series(work, ctx.device, warmup=ctx.scale.warmup, repeats=ctx.scale.repeats, deadline=ctx.deadline,
                  what=what)
