"""The golden vectors on the device in exact float32 (the CPU tests' bounds), and how far fast mode drifts.

Same weights, inputs and bounds as tests/test_network_golden.py (../shared/golden/README.md is the spec). At the
dry run's narrower width no golden vectors exist: its own float32 run stands in for them, so the comparisons run
but can only agree.
"""

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

from .engine import (
    CodeFormer,
    OverflowEvents,
    composite_inpainting,
    filled_network,
    golden_input,
    overflow_events,
    reduced_precision,
    reference_arrays,
    tensor_to_crops,
)
from .plan import Context
from .report import Result, no_candidate
from .timing import swapped

FEATURE_BOUND = 1e-4
OUTPUT_BOUND = 1e-3  # times max |reference output|
Arrays = dict[str, np.ndarray]


@contextlib.contextmanager
def exact_float32() -> Iterator[None]:
    """TF32 off for convolutions and matrix products. torch runs CUDA convolutions in TF32 (a 10-bit mantissa)
    unless told otherwise, and the golden bounds are float32's."""
    with swapped(torch.backends.cudnn, "allow_tf32", False), swapped(torch.backends.cuda.matmul, "allow_tf32", False):
        yield


def run_golden(ctx: Context) -> None:
    """Per task: exact float32 against the golden bounds, then fast mode (float32 codes, the decoder at the
    engine's reduced precision, then at the candidate one) against exact; for restore also the channels_last
    decoder and the engine's float32 started from torch's default flags (TF32 on)."""
    fast, candidate = reduced_precision(ctx.device), ctx.scale.candidate
    for task, fidelities in ctx.scale.fidelities.items():
        ctx.deadline.require(15, f"golden vectors of {task}")
        net = filled_network(task, ctx.device)
        x = golden_input(task).to(ctx.device)
        with exact_float32():
            exact = _outputs(net, x, task, fidelities, "float32")
        dry_run = ctx.scale.network_width is not None
        reference = exact if dry_run else reference_arrays(task)
        stand_in = " (dry run: compared with its own float32 run)" if dry_run else ""
        ctx.results[f"golden/{task}"] = _bounds_result(exact, reference, fidelities, stand_in)
        with overflow_events() as events:
            drifted = _outputs(net, x, task, fidelities, fast)
        ctx.results[f"drift/{task}"] = _drift_result(drifted, exact, fidelities, fast, events)
        if ctx.measures_candidate:
            with overflow_events() as events:
                drifted = _outputs(net, x, task, fidelities, candidate)
            ctx.results[f"drift/{task}/{candidate}"] = _drift_result(drifted, exact, fidelities, candidate, events)
        else:
            ctx.results[f"drift/{task}/{candidate}"] = no_candidate(candidate)
        ctx.numbers.setdefault("golden", {})[task] = _gaps(exact, reference, fidelities)
        if task == "restore":
            _restore_variants(ctx, net, x, fidelities, reference, stand_in)
        del net
        if ctx.on_gpu:
            torch.cuda.empty_cache()  # the next task's network starts from a clean pool


def _restore_variants(ctx: Context, net: CodeFormer, x: torch.Tensor, fidelities: tuple[float, ...],
                      reference: Arrays, stand_in: str) -> None:
    net.use_channels_last()
    try:
        with exact_float32():
            channels_last = _outputs(net, x, "restore", fidelities, "float32")
    finally:
        net.use_channels_last(False)
    ctx.results["golden/restore/channels_last"] = _bounds_result(channels_last, reference, fidelities, stand_in)
    if not ctx.on_gpu:
        ctx.results["golden/restore/tf32"] = Result(verdict="n/a", notes="TF32 is a CUDA setting")
        return
    as_engine_runs = _outputs(net, x, "restore", fidelities, "float32")
    flags = (f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
             f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}")
    ctx.results["golden/restore/tf32"] = _bounds_result(as_engine_runs, reference, fidelities, f" ({flags})")


def _outputs(net: CodeFormer, x: torch.Tensor, task: str, fidelities: tuple[float, ...], precision: str) -> Arrays:
    """The golden README's arrays from our network: logits, idx (256,), lq_feat, out_w<w>, composite_w1; encoded
    in float32 as the engine always does, decoded at `precision`."""
    encoded = net.encode(x, adain=task != "inpaint", precision="float32")
    arrays = {"logits": encoded.logits, "idx": encoded.idx[0], "lq_feat": encoded.lq_feat}
    for w in fidelities:
        arrays[f"out_w{w:g}"] = net.decode(encoded, w, precision=precision)
    if task == "inpaint":
        arrays["composite_w1"] = composite_inpainting(x, arrays["out_w1"])
    return {name: tensor.cpu().numpy() for name, tensor in arrays.items()}


def _output_names(reference: Arrays, fidelities: tuple[float, ...]) -> list[str]:
    return [f"out_w{w:g}" for w in fidelities] + [name for name in ("composite_w1",) if name in reference]


def _gaps(ours: Arrays, reference: Arrays, fidelities: tuple[float, ...]) -> dict[str, float]:
    """Share of code indices that differ, largest feature differences, outputs' largest difference / max |ref|."""
    gaps = {"idx_changed": float((ours["idx"] != reference["idx"]).mean())}
    for name in ("logits", "lq_feat"):
        gaps[name] = float(np.abs(ours[name] - reference[name]).max())
    for name in _output_names(reference, fidelities):
        gaps[name] = float(np.abs(ours[name] - reference[name]).max() / np.abs(reference[name]).max())
    return gaps


def _bounds_result(ours: Arrays, reference: Arrays, fidelities: tuple[float, ...], context: str) -> Result:
    gaps = _gaps(ours, reference, fidelities)
    outputs = {name: gap for name, gap in gaps.items() if name.startswith(("out_", "composite_"))}
    within = (gaps["idx_changed"] == 0 and max(gaps["logits"], gaps["lq_feat"]) <= FEATURE_BOUND
              and max(outputs.values()) <= OUTPUT_BOUND)
    codes = "identical" if gaps["idx_changed"] == 0 else f"{gaps['idx_changed']:.1%} differ"
    notes = (f"idx {codes}; logits {gaps['logits']:.1e}, lq_feat {gaps['lq_feat']:.1e}; "
             + ", ".join(f"{name} {gap:.1e}" for name, gap in outputs.items()) + context)
    worst = max(outputs.values())
    return Result("golden reference", f"{worst:.1e} x max\\|ref\\|", "", "pass" if within else "FAIL", notes)


def _drift_result(ours: Arrays, exact: Arrays, fidelities: tuple[float, ...], precision: str,
                  events: OverflowEvents) -> Result:
    """Codes changed against exact float32 on this device (must be none: fast mode encodes in float32), and the
    error in output pixels (uint8, as the pipeline rounds them) over every w: max, mean, 99th percentile; with what
    the engine did about overflows on the way."""
    reference = exact
    gaps = _gaps(ours, reference, fidelities)
    errors = np.concatenate([
        np.abs(_pixels(ours[name]).astype(np.int16) - _pixels(reference[name])).ravel()
        for name in _output_names(reference, fidelities)
    ])
    worst = max(gap for name, gap in gaps.items() if name.startswith(("out_", "composite_")))
    notes = (f"{gaps['idx_changed']:.1%} of code indices changed; pixel error max {errors.max()}, mean "
             f"{errors.mean():.2f}, 99th percentile {np.percentile(errors, 99):.0f} (uint8); outputs {worst:.1e} x "
             "max\\|exact\\|")
    if precision == "float32":
        notes += "; this device's fast mode runs float32 (no faster reduced precision here)"
    else:
        notes += events.describe(passes=1 + len(fidelities))
    verdict = "pass" if gaps["idx_changed"] == 0 else "FAIL"
    return Result("exact float32", f"{gaps['idx_changed']:.1%} codes, {errors.max()} px max", "", verdict, notes)


def _pixels(output: np.ndarray) -> np.ndarray:
    return np.stack(tensor_to_crops(torch.from_numpy(output)))
