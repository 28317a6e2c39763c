"""Run issue 15's GPU check: sections in order, each inside the run's time box, the results written after each one
(a section that fails or runs out of time loses only its own rows).

    python -m bench.gpu_check [--dry-run] [--budget-s S] [--out DIR]

bench/gpu_check.sh is the one command to run (it installs the carried wheels first).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import cv2
import torch

from .imports import ENGINE_REMEDY, REFERENCE_MODULE, REFERENCE_REMEDY, guard_imports, import_problem
from .plan import BENCH_DIR, DEFAULT_CARRY, DRY_RUN, FULL, Context, Inputs
from .report import (
    FIDELITY_TARGET_MS,
    PHOTO_TARGET_MS,
    SPEEDUP_TARGET,
    Row,
    SectionOutcome,
    planned_rows,
    render_table,
)
from .timing import Deadline, OutOfTime, time_once

RESULTS_FILE = BENCH_DIR / "results-cuda.md"
FULL_BUDGET_S = 420.0  # issue 15: under 8 minutes on one H100; gpu_check.sh stops the process at 8
DRY_RUN_BUDGET_S = 300.0
Section = Callable[[Context], None]
_STARTED = time.monotonic()


def log(message: str) -> None:
    """A progress line: seconds since start and the wall clock, so a cut-off log still says where time went."""
    stamp = datetime.now().strftime("%H:%M:%S")
    print(f"[gpu_check {time.monotonic() - _STARTED:6.1f}s {stamp}] {message}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="on the CPU: tiny sizes, the same code path")
    parser.add_argument("--budget-s", type=float, help=f"the run's time box (default {FULL_BUDGET_S:g} s, dry run "
                        f"{DRY_RUN_BUDGET_S:g} s)")
    parser.add_argument("--out", type=Path, default=os.environ.get("OUT") or None,
                        help="also write the table and gpu_check.json here (default: $OUT, if set)")
    args = parser.parse_args()
    scale = DRY_RUN if args.dry_run else FULL
    device = torch.device("cpu" if args.dry_run else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        log("no CUDA device here: run the check on a GPU machine, or with --dry-run on a CPU")
        return 2
    site = os.environ.get("GPU_CHECK_SITE")
    guard_imports(Path(site) if site else None)
    inputs = Inputs.find(DEFAULT_CARRY)
    log(f"{scale.name} on {device}; inputs from {inputs.golden_dir.parent}; wheels from {site or 'this Python'}")
    engine_problem = import_problem("bench.gpu_check.engine", ENGINE_REMEDY)
    fatal = [f"missing input {path}" for path in inputs.missing()] + ([engine_problem] if engine_problem else [])
    reference_problem = import_problem(REFERENCE_MODULE, REFERENCE_REMEDY)
    if reference_problem and not args.dry_run:
        fatal.append(reference_problem)  # on the GPU machine the reference path is the point: stop before it costs
    if fatal:
        for problem in fatal:
            log(f"cannot run: {problem}")
        return 2
    budget = args.budget_s or (DRY_RUN_BUDGET_S if args.dry_run else FULL_BUDGET_S)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        ctx = Context(device, scale, inputs, Deadline(budget), Path(work))
        unavailable = {"reference": reference_problem} if reference_problem else {}
        return run_all(ctx, unavailable, args.out)


def run_all(ctx: Context, unavailable: dict[str, str], out: Path | None) -> int:
    # Imported only now, after the preflight: every section imports the engine.
    from . import engine
    from .golden import run_golden
    from .photo import run_photo
    from .reference import run_reference
    from .speed import NotApplicable, run_latency, run_speed_options

    if ctx.scale.network_width is not None:
        engine.narrow_networks(ctx.scale.network_width)
    engine.use_golden_dir(ctx.inputs.golden_dir)
    fast = engine.fast_mode_precision("auto", ctx.device)
    ctx.numbers["fast_precision"] = fast
    scale = ctx.scale
    rows = planned_rows(scale.fidelities, scale.batches, scale.photo_modes, fast, scale.candidate)
    sections: list[tuple[str, Section, str | None]] = [
        ("weights", _load_pipeline, None), ("golden", run_golden, None), ("reference", run_reference, None),
        ("latency", run_latency, "weights"), ("whole photo", run_photo, "weights"),
        ("speed options", run_speed_options, "weights"),
    ]
    environment = environment_lines(ctx)
    for name, section, needs in sections:
        if name in unavailable:
            ctx.outcomes[name] = SectionOutcome("skipped", 0.0, unavailable[name])
        elif needs and ctx.outcomes[needs].status != "ok":
            ctx.outcomes[name] = SectionOutcome("skipped", 0.0, f"needs the {needs} section, which did not finish")
        else:
            ctx.outcomes[name] = _run_section(ctx, name, section, NotApplicable)
        log(f"{name}: {ctx.outcomes[name].status} ({ctx.outcomes[name].seconds:.1f} s) {ctx.outcomes[name].message}")
        write_outputs(ctx, rows, environment + [_run_line(ctx)], out)
    print("\n".join(render_table(rows, ctx.results, ctx.outcomes)), flush=True)
    return 1 if any(outcome.status == "failed" for outcome in ctx.outcomes.values()) else 0


def _load_pipeline(ctx: Context) -> None:
    """Stand-in weights written here (the CodeFormer file is too big to carry), then the engine's pipeline with
    every model this run uses loaded onto the device once."""
    from .engine import offline_pipeline, write_pipeline_weights

    weights, write_seconds = time_once(lambda: write_pipeline_weights(ctx.work_dir / "weights"), ctx.device)
    ctx.pipeline = offline_pipeline(weights, ctx.device)
    _, load_seconds = time_once(
        lambda: (ctx.pipeline.models.codeformer("restore"), ctx.pipeline.models.parser()), ctx.device)
    ctx.numbers["weights"] = {"write_s": write_seconds, "load_s": load_seconds}


def _run_section(ctx: Context, name: str, section: Section, not_applicable: type[Exception]) -> SectionOutcome:
    log(f"{name}: start, {ctx.deadline.left():.0f} s of the time box left")
    start = time.monotonic()
    try:
        section(ctx)
    except not_applicable as why:
        return SectionOutcome("skipped", time.monotonic() - start, str(why))
    except OutOfTime as why:
        return SectionOutcome("out of time", time.monotonic() - start, str(why))
    except Exception as error:  # noqa: BLE001 - recorded with its traceback: one failing section must not lose the rest
        traceback.print_exc()
        if ctx.on_gpu:
            torch.cuda.empty_cache()  # what the failed section held, e.g. after an out-of-memory
        return SectionOutcome("failed", time.monotonic() - start, f"{type(error).__name__}: {error}")
    return SectionOutcome("ok", time.monotonic() - start)


def write_outputs(ctx: Context, rows: list[Row], header: list[str], out: Path | None) -> None:
    text = document(rows, ctx.results, ctx.outcomes, header)
    name = RESULTS_FILE.name if ctx.scale is FULL else "results-dry-run.md"
    if ctx.scale is FULL:
        RESULTS_FILE.write_text(text)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
        numbers = {"scale": ctx.scale.name, "header": header, "numbers": ctx.numbers,
                   "outcomes": {name: asdict(outcome) for name, outcome in ctx.outcomes.items()},
                   "results": {key: asdict(result) for key, result in ctx.results.items()}}
        (out / "gpu_check.json").write_text(json.dumps(numbers, indent=1, default=str))


def document(rows: list[Row], results: dict, outcomes: dict, header: list[str]) -> str:
    return "\n".join([
        "# CodeFormer on a GPU: the GPU check (`bash bench/gpu_check.sh`)", "", *header, "",
        *render_table(rows, results, outcomes), "",
        *FOOTER, "",
    ])


FOOTER = [
    f"Targets (per image, same GPU, same run): network per face in fast mode, batched, at least {SPEEDUP_TARGET:g}x "
    f"faster than the reference's float32 one face at a time; a 4-face photo end to end (faces given) under "
    f"{PHOTO_TARGET_MS:g} ms on an H100; a new fidelity value under {FIDELITY_TARGET_MS:g} ms.",
    "Fast mode: encoder and transformer in exact float32 (TF32 off), so its code indices are float32's; decoder and "
    "ParseNet at the GPU's reduced precision (bf16 where native). Golden rows: exact float32 (TF32 off) unless the "
    "row says otherwise, against ../shared/golden/ with the CPU tests' bounds; fast-mode rows against this device's "
    "exact float32. Other rows start from torch's defaults (cuDNN convolutions in TF32, cudnn.benchmark off); the "
    "engine's float32 turns TF32 off for its own convolutions while they run.",
    "Timing: the device synchronised around each timed call, host clock; warm-up calls first, then the median. "
    "Per face = the batch's time / its faces. Stand-in weights (golden fill) cost what the real ones do.",
]


def environment_lines(ctx: Context) -> list[str]:
    software = ", ".join([f"opencv {cv2.__version__}"] + [f"{name} {_version(name)}" for name in (
        "torchvision", "numpy", "spandrel-extra-arches", "huggingface_hub")])
    lines = [f"- Software: Python {platform.python_version()}, torch {torch.__version__} (CUDA "
             f"{torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}), {software}."]
    if ctx.on_gpu:
        props = torch.cuda.get_device_properties(ctx.device)
        lines.insert(0, f"- Device: {props.name} ({ctx.device}), {props.total_memory / 2**30:.1f} GiB, "
                        f"{props.multi_processor_count} SMs; driver {_driver_version()}; {os.cpu_count()} CPU cores.")
    else:
        lines.insert(0, f"- Device: CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores) - a "
                        "dry run: no GPU has run this check yet.")
    return lines


def _run_line(ctx: Context) -> str:
    sections = ", ".join(f"{name} {outcome.status} {outcome.seconds:.0f} s" for name, outcome in ctx.outcomes.items())
    width = ctx.scale.network_width
    shape = f"network {width} channels wide at its first level (published: 64)" if width else "published network"
    return (f"- Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {ctx.scale.name} ({shape}, batches "
            f"{', '.join(map(str, ctx.scale.batches))}, {ctx.scale.warmup} warm-up + {ctx.scale.repeats} timed "
            f"calls); {ctx.deadline.elapsed():.0f} s of a {ctx.deadline.seconds:.0f} s time box. Sections: {sections}.")


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "(absent)"


def _driver_version() -> str:
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unknown ({error})"
    return done.stdout.strip() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
