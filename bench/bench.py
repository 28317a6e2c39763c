"""Speed of our pipeline against the reference path, measured in one run on one machine.

    .venv/bin/python -m bench.bench [--quick] [--repeat N] [--device cpu|cuda] [--write]

Prints a markdown table (baseline seconds, ours, ratio, target, pass/fail) and with --write saves it as
bench/results-cpu.md (results-bench-cuda.md on a GPU: results-cuda.md is the GPU check's). Each measurement runs
in a child process of its own (this script with --child), so each path's peak RSS is its own and no path inherits
another's warm caches; children of the two paths alternate, and a time is the minimum over --repeat children. The
reference path is in reference_path.py, the weights in bench_weights.py. Not a test: CI times nothing.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bench.bench_weights import default_cache_dir, ensure_bench_weights
from tests.support.shared_data import samples_dir

BENCH_DIR = Path(__file__).resolve().parent

if TYPE_CHECKING:
    from codeformer_core.pipeline import Pipeline

SAMPLES = samples_dir()
ALIGNED_FACE = SAMPLES / "aligned" / "0240.png"
WHOLE_PHOTO = SAMPLES / "whole" / "00.jpg"
FIDELITY = 0.5  # the official default w
NEW_FIDELITY = 0.8  # the slider moved after a run
UPSCALE = 2  # the official default; the background is resized (no upsampler), as in the official script without it
TARGETS = {"aligned": 1.4, "aligned-fast": 2.5, "whole": 1.5, "whole-fast": 2.5, "fidelity-fast": 3.0, "rss": 1.0}
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
"""The flags that decide the CPU's kernels and fast mode's precision, printed with every result."""
LOGITS_BOUND = 1e-4  # ../shared/golden/README.md
OUTPUT_BOUND = 1e-3  # times max |reference output|
# Convolution FLOPs per 512 face (counted with forward hooks): encode 210 G, decode at w > 0 584 G (the CFT blocks
# 218 G of it, 140 G at 256 px), ParseNet 469 G at 512 px.
KERNEL_KINDS = ("ours-aligned-winograd", "ours-aligned-channels-last", "ours-aligned-plain")
QUICK_KINDS = ("reference-aligned", "ours-aligned", "ours-aligned-fast", *KERNEL_KINDS)
ALL_KINDS = QUICK_KINDS + ("reference-whole", "ours-whole", "ours-whole-fast")

Measured = tuple[dict[str, Any], dict[str, np.ndarray]]  # a child's numbers, and arrays for the comparisons
Timing = dict[str, float]  # "s": wall seconds, "cpu_s": the process's CPU seconds (steadier on a busy machine)


# ---------------------------------------------------------------- children: one measurement per process


def _timed(work: Callable[[], Any], device: torch.device) -> tuple[Any, Timing]:
    """work()'s result, its wall time and this process's CPU time (all threads) over it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, {"s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def _memory(device: torch.device) -> dict[str, float]:
    """Peak resident memory of this process so far, and the GPU's peak allocation on CUDA, in MB."""
    peaks = {"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        peaks["gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return peaks


def _reference_aligned(device: torch.device, weights_dir: Path, _faces: list) -> Measured:
    import cv2

    from bench.reference_path import load_reference_network, restore_face_reference

    net, load_time = _timed(lambda: load_reference_network(weights_dir, device), device)
    face = cv2.imread(str(ALIGNED_FACE), cv2.IMREAD_COLOR)
    result, run_time = _timed(lambda: restore_face_reference(net, face, FIDELITY, device), device)
    arrays = {"face": result.face, "output": result.output.numpy(), "logits": result.logits.numpy()}
    return {"load": load_time, "run": run_time, "threads": torch.get_num_threads(), **_memory(device)}, arrays


def _our_pipeline(
    device: torch.device, weights_dir: Path, detector: bool = False, parser: bool = False
) -> tuple["Pipeline", Timing]:
    """Our Pipeline on the bench weights with every model it will use loaded (timed); never touches a network."""
    from codeformer_core.pipeline import Pipeline
    from codeformer_core.settings import Settings
    from codeformer_core.weights import REGISTRY, WeightStore

    # The generated files differ from the official ones in size and digest: drop both facts, or the store would
    # refuse (and delete) them.
    registry = {name: replace(entry, size=None, sha256=None) for name, entry in REGISTRY.items()}
    store = WeightStore(weights_dir, allow_url_fallback=False, registry=registry)
    # CPU kernels and backend as a child's environment sets them (see `_with_env`); the kernel probe's decision
    # comes from the machine's cache, as in the app.
    settings = Settings.from_env()
    pipeline = Pipeline(store, str(device), cpu_kernels=settings.cpu_kernels,
                        cpu_kernels_cache=settings.cpu_kernels_cache, backend=settings.backend)

    def load() -> None:
        pipeline.models.codeformer("restore")
        if parser:
            pipeline.models.parser()
        if detector:
            pipeline.models.detector("dlib")

    _, load_time = _timed(load, device)
    return pipeline, load_time


def _recorded_codes() -> list[np.ndarray]:
    """Every code index the network picks from now on in this child process, in order, face by face."""
    from codeformer_core.network import CodeFormer

    codes: list[np.ndarray] = []
    encode = CodeFormer.encode

    def recording(net: CodeFormer, x: torch.Tensor, adain: bool = True, precision: str = "float32") -> Any:
        encoded = encode(net, x, adain, precision)
        codes.extend(encoded.idx.cpu().numpy())
        return encoded

    CodeFormer.encode = recording
    return codes


def _compute(pipeline: "Pipeline", exact: bool) -> dict[str, str]:
    from codeformer_core.network.precision import precision_summary

    kernels = pipeline.cpu_kernels.describe() if pipeline.cpu_kernels else "-"
    return {"precision": precision_summary("float32" if exact else pipeline.fast_precision), "kernels": kernels}


def _ours_aligned(device: torch.device, weights_dir: Path, _faces: list, *, exact: bool = True) -> Measured:
    from codeformer_core.images import read_image
    from codeformer_core.network.batches import crops_to_tensor
    from codeformer_core.options import RestoreOptions
    from codeformer_core.pipeline import RestoreRequest

    codes = _recorded_codes()
    pipeline, load_time = _our_pipeline(device, weights_dir)
    image = read_image(ALIGNED_FACE)
    options = RestoreOptions(aligned=True, fidelity=FIDELITY, exact=exact)
    first, first_time = _timed(lambda: pipeline.run(RestoreRequest(image, options)), device)
    again_request = RestoreRequest(image, replace(options, fidelity=NEW_FIDELITY))
    again, again_time = _timed(lambda: pipeline.run(again_request), device)
    # w = 0: the torch network skips the CFT blocks; an exported graph, which takes w as an input, cannot.
    _, zero_time = _timed(lambda: pipeline.run(RestoreRequest(image, replace(options, fidelity=0.0))), device)
    arrays = {"face": first.faces[0], "idx": codes[0]}
    if exact:  # untimed: the network's raw output and logits, for the golden bounds against the reference's
        net = pipeline.models.codeformer("restore")
        encoded = net.encode(crops_to_tensor([image.bgr], net.device))
        arrays.update(output=net.decode(encoded, FIDELITY).cpu().numpy(), logits=encoded.logits.cpu().numpy())
    numbers = {
        "load": load_time, "run": first_time, "again": again_time, "zero": zero_time, "stages": first.report.timings,
        "stages_again": again.report.timings, "reused": again.report.reused, **_compute(pipeline, exact),
        **_memory(device),
    }
    return numbers, arrays


def _reference_whole(device: torch.device, weights_dir: Path, faces: list) -> Measured:
    import cv2

    from bench.reference_path import load_reference_network, reference_helper, restore_photo_reference
    from codeformer_core.pipeline.clock import StageClock

    def load() -> tuple:
        return load_reference_network(weights_dir, device), reference_helper(weights_dir, device, UPSCALE)

    (net, helper), load_time = _timed(load, device)
    image = cv2.imread(str(WHOLE_PHOTO), cv2.IMREAD_COLOR)
    given = [(face["box"] + [face["score"]], face["landmarks"]) for face in faces]
    clock = StageClock()
    output, run_time = _timed(lambda: restore_photo_reference(helper, net, image, given, FIDELITY, clock), device)
    numbers = {"load": load_time, "run": run_time, "stages": clock.timings, **_memory(device)}
    return numbers, {"image": output}


def _ours_whole(device: torch.device, weights_dir: Path, faces: list, *, exact: bool = True) -> Measured:
    from codeformer_core.images import read_image
    from codeformer_core.options import RestoreOptions
    from codeformer_core.pipeline import RestoreRequest

    codes = _recorded_codes()
    pipeline, load_time = _our_pipeline(device, weights_dir, detector=True, parser=True)
    image = read_image(WHOLE_PHOTO)
    # Our pipeline runs dlib itself: its detection is taken out of our time (wall: the run's own detect stage;
    # CPU: this identical detect call), and its faces are checked against the ones the reference path gets.
    _, detect = _timed(lambda: pipeline.models.detector("dlib").detect(image.bgr), device)
    options = RestoreOptions(fidelity=FIDELITY, upscale=UPSCALE, detector="dlib", background="none", exact=exact)
    first, first_time = _timed(lambda: pipeline.run(RestoreRequest(image, options)), device)
    memory = _memory(device)  # before the second run: the peak of the end-to-end run alone
    again_request = RestoreRequest(image, replace(options, fidelity=NEW_FIDELITY))
    again, again_time = _timed(lambda: pipeline.run(again_request), device)
    detect = {"s": first.report.timings.get("detect", 0.0), "cpu_s": detect["cpu_s"]}
    found = np.array([face.landmarks for face in first.report.faces], np.float32)
    given = np.array([face["landmarks"] for face in faces], np.float32)
    landmark_gap = float(np.abs(found - given).max()) if found.shape == given.shape else float("inf")
    numbers = {
        "load": load_time, "run": {key: first_time[key] - detect[key] for key in first_time}, "detect": detect,
        "again": again_time, "stages": first.report.timings, "stages_again": again.report.timings,
        "reused": again.report.reused, "faces": len(found), "landmark_gap_px": landmark_gap,
        **_compute(pipeline, exact), **memory,
    }
    arrays = {"image": first.image, "idx": np.stack(codes[: len(found)])}
    if not exact:  # ParseNet's masks of the restored faces at fast mode's precision and in float32, untimed
        parser = pipeline.models.parser()
        arrays["mask_gap"] = np.abs(parser.paste_masks(first.faces, pipeline.fast_precision)
                                    - parser.paste_masks(first.faces, "float32"))
    return numbers, arrays


Child = Callable[[torch.device, Path, list], Measured]


def _with_env(child: Child, **variables: str) -> Child:
    """`child` with settings from the environment changed (read by `_our_pipeline`, after this)."""

    def run(device: torch.device, weights_dir: Path, faces: list) -> Measured:
        os.environ.update(variables)
        return child(device, weights_dir, faces)

    return run


def _cuda_provider_only(child: Child) -> Child:
    """`child` on the onnxruntime backend with CUDA's execution provider alone (no TensorRT)."""

    def run(device: torch.device, weights_dir: Path, faces: list) -> Measured:
        from codeformer_core.export import runtime as onnx_runtime

        onnx_runtime.GPU_PROVIDERS = ("CUDAExecutionProvider",)
        return child(device, weights_dir, faces)

    return run


_ORT = {"CODEFORMER_BACKEND": "onnxruntime"}
CHILDREN: dict[str, Child] = {
    "reference-aligned": _reference_aligned,
    "ours-aligned": _ours_aligned,
    "ours-aligned-fast": partial(_ours_aligned, exact=False),
    **{f"ours-aligned-{kernels}": _with_env(_ours_aligned, CODEFORMER_CPU_KERNELS=kernels)
       for kernels in ("winograd", "channels-last", "plain")},
    "reference-whole": _reference_whole,
    "ours-whole": _ours_whole,
    "ours-whole-fast": partial(_ours_whole, exact=False),
    # bench/onnx_backend.py: the network through ONNX Runtime (TensorRT first on CUDA where present), and CUDA's
    # provider alone.
    "ours-aligned-ort": _with_env(_ours_aligned, **_ORT),
    "ours-whole-ort": _with_env(_ours_whole, **_ORT),
    "ours-aligned-ort-cuda": _cuda_provider_only(_with_env(_ours_aligned, **_ORT)),
    "ours-whole-ort-cuda": _cuda_provider_only(_with_env(_ours_whole, **_ORT)),
}


def run_child(kind: str, device: torch.device, weights_dir: Path, faces_file: Path, out: Path) -> None:
    faces = json.loads(faces_file.read_text()) if faces_file.is_file() else []
    numbers, arrays = CHILDREN[kind](device, weights_dir, faces)
    np.savez(out.with_suffix(".npz"), **arrays)
    out.with_suffix(".json").write_text(json.dumps(numbers))


# ---------------------------------------------------------------- parent: orchestration and the table


def detect_shared_faces(path: Path) -> list[dict[str, Any]]:
    """dlib's faces on the photo (random RetinaFace weights find nothing meaningful), given to both paths."""
    from codeformer_core.faces.detection import DlibDetector, select_faces
    from codeformer_core.images import read_image
    from codeformer_core.pipeline import DEFAULT_MAX_FACES

    bgr = read_image(path).bgr
    faces = select_faces(DlibDetector().detect(bgr), bgr.shape, only_center_face=False, max_faces=DEFAULT_MAX_FACES)
    return [{"box": face.box.tolist(), "score": face.score, "landmarks": face.landmarks.tolist()} for face in faces]


def measure(
    kinds: tuple[str, ...], repeat: int, device: str, weights_dir: Path, work: Path
) -> dict[str, list[Measured]]:
    """Run each kind `repeat` times, alternating kinds, each in a fresh process; HF_HUB_OFFLINE guards the network."""
    results: dict[str, list[Measured]] = {kind: [] for kind in kinds}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    for round_index in range(repeat):
        for kind in kinds:
            out = work / f"{kind}-{round_index}"
            command = [sys.executable, "-m", "bench.bench", "--child", kind, "--device", device, "--weights-dir",
                       str(weights_dir), "--faces", str(work / "faces.json"), "--out", str(out)]
            print(f"[bench] {kind} ({round_index + 1}/{repeat})", file=sys.stderr, flush=True)
            done = subprocess.run(command, cwd=BENCH_DIR.parent, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"bench: the {kind} child failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
            with np.load(out.with_suffix(".npz")) as arrays:
                results[kind].append((json.loads(out.with_suffix(".json").read_text()), dict(arrays)))
    return results


def best(runs: list[Measured], key: str) -> Timing:
    """The minimum over the repeats of a timing, wall and CPU time each on its own."""
    return {part: min(numbers[key][part] for numbers, _ in runs) for part in ("s", "cpu_s")}


def fastest(runs: list[Measured], key: str = "run") -> dict[str, Any]:
    """The numbers of the repeat whose `key` took the least wall time."""
    return min(runs, key=lambda run: run[0][key]["s"])[0]


def _verdict(ratio: float, target: str | None, ok: bool) -> str:
    if target is None:
        return "(none) | info"
    return f">= {TARGETS[target]:g}x | {'pass' if ok and ratio >= TARGETS[target] else 'FAIL'}"


def time_row(name: str, baseline: Timing, ours: Timing, target: str | None, notes: str, *, ok: bool = True) -> str:
    """Pass/fail goes by wall time (the issue's measure); the CPU-time ratio shows how much of it survives load."""
    ratio = baseline["s"] / ours["s"]
    return (f"| {name} | {baseline['s']:.2f} s | {ours['s']:.2f} s | {ratio:.2f}x | "
            f"{baseline['cpu_s'] / ours['cpu_s']:.2f}x | {_verdict(ratio, target, ok)} | {notes} |")


def memory_row(name: str, baseline_mb: float, ours_mb: float, notes: str) -> str:
    ratio = baseline_mb / ours_mb
    verdict = _verdict(ratio, "rss", True)
    return f"| {name} | {baseline_mb:.0f} MB | {ours_mb:.0f} MB | {ratio:.2f}x | | {verdict} | {notes} |"


def aligned_rows(results: dict[str, list[Measured]]) -> list[str]:
    reference, ours, fast = (results[kind] for kind in ("reference-aligned", "ours-aligned", "ours-aligned-fast"))
    our_arrays, fast_arrays = ours[0][1], fast[0][1]
    within, agreement = golden_agreement(reference[0][1], our_arrays)
    mine = fastest(ours)
    rows = [
        time_row("aligned face, exact float32", best(reference, "run"), best(ours, "run"), "aligned",
                 f"{mine['kernels']}; {agreement}", ok=within),
        time_row(f"aligned face, {fastest(fast)['precision']}", best(reference, "run"), best(fast, "run"),
                 "aligned-fast", _drift_note(fast_arrays["idx"], our_arrays["idx"], fast_arrays["face"],
                                             our_arrays["face"]),
                 ok=bool((fast_arrays["idx"] == our_arrays["idx"]).all())),
        time_row("new fidelity, aligned face, exact", best(ours, "run"), best(ours, "again"), None,
                 f"baseline = our first run (w={FIDELITY}); ours = the same face at w={NEW_FIDELITY}; reused: "
                 + ", ".join(mine["reused"]) + "; on an aligned face only the encoder can be kept"),
    ]
    for kind in KERNEL_KINDS:
        if kind in results:
            forced = fastest(results[kind])
            rows.append(time_row(f"aligned face, exact float32, {forced['kernels']}", best(reference, "run"),
                                 best(results[kind], "run"), None,
                                 f"the probe on this machine chose {mine['kernels']}"))
    return rows


def golden_agreement(reference: dict[str, np.ndarray], ours: dict[str, np.ndarray]) -> tuple[bool, str]:
    """Whether an aligned-face child's raw output meets the golden bounds against the reference child's, and a note
    that says how far apart they are."""
    idx_same = bool((ours["logits"].argmax(-1) == reference["logits"].argmax(-1)).all())
    logits_gap = float(np.abs(ours["logits"] - reference["logits"]).max())
    output_gap = float(np.abs(ours["output"] - reference["output"]).max() / np.abs(reference["output"]).max())
    pixel_gap = int(np.abs(ours["face"].astype(int) - reference["face"]).max())
    # The issue asks for outputs within the golden bounds; the logits bound is the exact path's (default layout),
    # which speed options such as channels_last may exceed: shown, not judged.
    within = idx_same and output_gap <= OUTPUT_BOUND
    return within, (f"golden bounds {'met' if within else 'NOT met'}: idx {'identical' if idx_same else 'differ'}, "
                    f"output max diff {output_gap:.1e} x max\\|ref\\| (<= {OUTPUT_BOUND:g}); logits max diff "
                    f"{logits_gap:.1e} (exact-path bound {LOGITS_BOUND:g}); face pixels max diff {pixel_gap}")


def _drift_note(fast_idx: np.ndarray, exact_idx: np.ndarray, fast_image: np.ndarray, exact_image: np.ndarray) -> str:
    """Fast mode against exact float32: codes changed (must be none) and the pixel error of the results."""
    changed = float((fast_idx != exact_idx).mean())
    error = np.abs(fast_image.astype(int) - exact_image.astype(int))
    return (f"against exact float32: {changed:.1%} of code indices changed (must be 0); pixel error max "
            f"{error.max()}, mean {error.mean():.2f}, 99th percentile {np.percentile(error, 99):.0f}")


def whole_rows(results: dict[str, list[Measured]]) -> list[str]:
    reference, ours, fast = results["reference-whole"], results["ours-whole"], results["ours-whole-fast"]
    mine, fast_numbers = fastest(ours), fastest(fast)
    faces = mine["faces"]
    ref_time, our_time, fast_time = best(reference, "run"), best(ours, "run"), best(fast, "run")
    exact_arrays, fast_arrays = ours[0][1], fast[0][1]
    image_gap = np.abs(exact_arrays["image"].astype(int) - reference[0][1]["image"])
    masks = fast_arrays["mask_gap"]
    reference_rss = max(n["rss_mb"] for n, _ in reference)
    rows = [
        time_row(f"whole photo, {faces} faces, end to end, exact float32", ref_time, our_time, "whole",
                 f"{mine['kernels']}; detection excluded from both (same dlib faces; ours found them again within "
                 f"{mine['landmark_gap_px']:.2g} px in {mine['detect']['s']:.2f} s); per face "
                 f"{ref_time['s'] / faces:.2f} s vs {our_time['s'] / faces:.2f} s; output vs reference: pixels "
                 f"max diff {image_gap.max()}, mean {image_gap.mean():.2f} (ours bounds the parse mask by the soft "
                 "rectangle, as CodeFormer's own facelib does; facexlib's helper pastes with the parse mask alone)"),
        time_row(f"whole photo, {faces} faces, end to end, {fast_numbers['precision']}", ref_time, fast_time,
                 "whole-fast",
                 _drift_note(fast_arrays["idx"], exact_arrays["idx"], fast_arrays["image"], exact_arrays["image"])
                 + f"; ParseNet's soft masks against float32's: max diff {masks.max():.3f}, mean {masks.mean():.4f}",
                 ok=bool((fast_arrays["idx"] == exact_arrays["idx"]).all())),
        time_row("new fidelity, whole photo, fast mode", ref_time, best(fast, "again"), "fidelity-fast",
                 "baseline = the reference path's whole run (it has no re-render); ours = our fast re-render at w="
                 f"{NEW_FIDELITY}; reused: " + ", ".join(fastest(fast, "again")["reused"])),
        time_row("new fidelity, whole photo, exact", our_time, best(ours, "again"), None,
                 "baseline = our exact first run, detection excluded"),
        memory_row("peak RSS, whole photo, exact", reference_rss, max(n["rss_mb"] for n, _ in ours),
                   "each path in its own process, models loaded; the highest of the repeats"),
        memory_row("peak RSS, whole photo, fast mode", reference_rss, max(n["rss_mb"] for n, _ in fast),
                   "the highest of the repeats"),
    ]
    if "gpu_mb" in mine:
        gpu = [max(n["gpu_mb"] for n, _ in runs) for runs in (reference, ours)]
        rows.append(memory_row("peak GPU memory, whole photo", gpu[0], gpu[1], "torch.cuda.max_memory_allocated"))
    return rows


def stage_lines(results: dict[str, list[Measured]]) -> list[str]:
    def show(stages: dict[str, float]) -> str:
        return ", ".join(f"{name} {seconds:.2f}" for name, seconds in stages.items())

    labels = {
        "reference-aligned": "reference, aligned face", "ours-aligned": "ours, aligned face, exact",
        "ours-aligned-fast": "ours, aligned face, fast mode", "reference-whole": "reference, whole photo",
        "ours-whole": "ours, whole photo, exact", "ours-whole-fast": "ours, whole photo, fast mode",
        **{kind: f"ours, aligned face, exact, {kind.removeprefix('ours-aligned-')} kernels" for kind in KERNEL_KINDS},
        "ours-aligned-ort": "ours on onnxruntime, aligned face", "ours-whole-ort": "ours on onnxruntime, whole photo",
        "ours-aligned-ort-cuda": "ours on onnxruntime (CUDA provider), aligned face",
        "ours-whole-ort-cuda": "ours on onnxruntime (CUDA provider), whole photo",
    }
    lines = []
    for kind, runs in results.items():
        mine = fastest(runs)
        stages = show(mine["stages"]) if "stages" in mine else f"network {mine['run']['s']:.2f}"
        lines.append(f"- {labels[kind]}: load {mine['load']['s']:.2f} s; stages (s): {stages}")
        if "stages_again" in mine:
            lines.append(f"- {labels[kind]}, new fidelity: {show(fastest(runs, 'again')['stages_again'])}")
    return lines


def spread(results: dict[str, list[Measured]]) -> float:
    """The largest (slowest - fastest) / fastest wall time of one measurement over its repeats."""
    walls = [[numbers["run"]["s"] for numbers, _ in runs] for runs in results.values()]
    return max(max(times) / min(times) - 1 for times in walls)


def _cpuinfo(field: str) -> str | None:
    """The first value of `field` in /proc/cpuinfo; None where there is none (or no such file)."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.split(":", 1)[0].strip() == field), None)


def cpu_model() -> str:
    """The CPU's model name, for the machine line of a results page."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def machine_lines(device: str, repeat: int, load_start: tuple[float, ...]) -> list[str]:
    flags = set((_cpuinfo("flags") or "").split())
    shown = " ".join(flag for flag in CPU_FLAGS if flag in flags) or "none of " + ", ".join(CPU_FLAGS)
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if device.startswith("cuda") else ""
    return [
        f"- Machine: {cpu_model()}, {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), "
        f"{torch.backends.cpu.get_cpu_capability()} (flags: {shown}){gpu}; Python {platform.python_version()}, "
        f"torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads, spandrel-extra-arches {version('spandrel-extra-arches')}.",
        f"- Load average at start {' / '.join(f'{v:.2f}' for v in load_start)}, at end "
        f"{' / '.join(f'{v:.2f}' for v in os.getloadavg())} (1/5/15 min; other work on the machine slows both paths).",
        f"- Device {device}; each time is the minimum over {repeat} child process(es) per measurement, paths "
        "alternating, each after its models are loaded and without a warm-up run.",
    ]


def document(
    title: str, results: dict[str, list[Measured]], args: argparse.Namespace, load_start: tuple[float, ...],
    table: list[str], footnote: str, facts: tuple[str, ...] = (),
) -> str:
    """A results page: the machine, the table (header lines and rows), a footnote and the stages."""
    return "\n".join([
        f"# {title} ({args.device})", "",
        *machine_lines(args.device, args.repeat, load_start), *facts,
        f"- Spread between the repeats of one measurement: up to {spread(results):.0%} of the fastest.", "",
        *table, "", footnote, "", "Stages:", *stage_lines(results), "",
    ])


def report(results: dict[str, list[Measured]], args: argparse.Namespace, load_start: tuple[float, ...]) -> str:
    rows = aligned_rows(results) + (whole_rows(results) if "ours-whole-fast" in results else [])
    table = ["| measurement | baseline | ours | ratio | CPU-time ratio | target | result | notes |",
             "|---|---|---|---|---|---|---|---|", *rows]
    return document(
        "CodeFormer speed: our pipeline against the reference path", results, args, load_start, table,
        "Baseline = the reference path (spandrel's CodeFormer + facexlib's FaceRestoreHelper in the official "
        "script's order, float32, one face at a time, ParseNet at 512, a photo under 512 px on its shorter side "
        "enlarged first as the official facelib does) unless the row says otherwise. Same weights (golden fill for "
        "CodeFormer, seeded random RetinaFace/ParseNet), same image, one run. Whole photo: `samples/whole/00.jpg`, "
        f"upscale {UPSCALE}, no background upsampler, parse-mask paste-back, w={FIDELITY}. Fast mode: encoder and "
        "transformer in float32 (the codes of exact float32), decoder and ParseNet at the machine's reduced "
        "precision; the kernel rows force CODEFORMER_CPU_KERNELS.",
    )


def add_run_arguments(parser: argparse.ArgumentParser, results_file: str) -> None:
    """The options bench.py and bench/onnx_backend.py share; --write saves the page as bench/`results_file`."""
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--repeat", type=int, default=2, help="child processes per measurement; the minimum is kept")
    parser.add_argument("--quick", action="store_true", help="aligned-face rows only")
    parser.add_argument("--write", action="store_true", help=f"also write bench/{results_file}")
    parser.add_argument("--weights-dir", type=Path, default=None, help="bench weights (default: a user cache dir)")


def run_kinds(kinds: tuple[str, ...], args: argparse.Namespace, weights_dir: Path) -> dict[str, list[Measured]]:
    """Measure `kinds` (whole-photo kinds get the shared dlib faces) as `args` say."""
    if args.repeat < 1:
        raise SystemExit(f"--repeat must be at least 1; got {args.repeat}")
    with tempfile.TemporaryDirectory(prefix="codeformer-bench-") as work:
        if any("whole" in kind for kind in kinds):
            (Path(work) / "faces.json").write_text(json.dumps(detect_shared_faces(WHOLE_PHOTO)))
        return measure(kinds, args.repeat, args.device, weights_dir, Path(work))


def publish(text: str, args: argparse.Namespace, results_file: str) -> None:
    print(text)
    if args.write:
        (BENCH_DIR / results_file).write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser, "results-cpu.md, or results-bench-cuda.md")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--faces", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child, torch.device(args.device), args.weights_dir, args.faces, args.out)
        return
    load_start = os.getloadavg()
    weights_dir = ensure_bench_weights(args.weights_dir or default_cache_dir())
    results = run_kinds(QUICK_KINDS if args.quick else ALL_KINDS, args, weights_dir)
    # results-cuda.md is the GPU check's (bench/gpu_check): this script's CUDA table has a name of its own.
    device = torch.device(args.device).type
    results_file = "results-cpu.md" if device == "cpu" else f"results-bench-{device}.md"
    publish(report(results, args, load_start), args, results_file)


if __name__ == "__main__":
    main()
