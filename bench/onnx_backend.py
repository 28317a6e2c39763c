"""The onnxruntime backend against the reference path and against our torch backend (issue 19).

    .venv/bin/python -m bench.onnx_backend [--repeat N] [--device cpu|cuda] [--quick] [--write]

Same children, weights, images and method as bench.py (each measurement in a fresh process, kinds alternating,
the minimum over --repeat): our pipeline runs once with CODEFORMER_BACKEND=torch and once with onnxruntime. On
CUDA the onnxruntime rows take TensorRT's execution provider where the installed onnxruntime-gpu has it, and a
second set takes CUDA's alone. The graphs are exported before any timing (a child's peak memory is its run's).
Prints a markdown table; --write saves it as bench/results-onnx-<device>.md. Not a test: CI times nothing.
"""

import argparse
import os
import sys

import torch

from bench.bench import (
    FIDELITY,
    NEW_FIDELITY,
    Measured,
    Timing,
    add_run_arguments,
    best,
    document,
    fastest,
    golden_agreement,
    publish,
    run_kinds,
)
from bench.bench_weights import CODEFORMER_FILE, default_cache_dir, ensure_bench_weights

Results = dict[str, list[Measured]]


def ratio(baseline: Timing, ours: Timing, part: str = "s") -> str:
    return f"{baseline[part] / ours[part]:.2f}x"


def time_row(name: str, reference: Timing | None, on_torch: Timing, on_ort: Timing, notes: str) -> str:
    """Times and ratios (> 1: onnxruntime faster); the CPU-time ratio is steadier on a busy machine."""
    ref = f"{reference['s']:.2f} s" if reference else "-"
    versus_ref = ratio(reference, on_ort) if reference else "-"
    return (f"| {name} | {ref} | {on_torch['s']:.2f} s | {on_ort['s']:.2f} s | {versus_ref} | {ratio(on_torch, on_ort)}"
            f" | {ratio(on_torch, on_ort, 'cpu_s')} | {notes} |")


def peak(runs: list[Measured], key: str = "rss_mb") -> float:
    return max(numbers[key] for numbers, _ in runs)


def memory_row(name: str, results: Results, kinds: tuple[str, str, str], key: str = "rss_mb") -> str:
    reference, on_torch, on_ort = (peak(results[kind], key) for kind in kinds)
    return (f"| {name} | {reference:.0f} MB | {on_torch:.0f} MB | {on_ort:.0f} MB | {reference / on_ort:.2f}x | "
            f"{on_torch / on_ort:.2f}x | | the highest of the repeats, models loaded (> 1: onnxruntime smaller) |")


def rows_for(results: Results, suffix: str, label: str) -> list[str]:
    aligned, whole = f"ours-aligned-{suffix}", f"ours-whole-{suffix}"
    rows = [
        time_row(f"aligned face, first run ({label})", best(results["reference-aligned"], "run"),
                 best(results["ours-aligned"], "run"), best(results[aligned], "run"),
                 f"encode + decode at w={FIDELITY}; "
                 + golden_agreement(results["reference-aligned"][0][1], results[aligned][0][1])[1]),
        time_row(f"aligned face, new fidelity ({label})", None, best(results["ours-aligned"], "again"),
                 best(results[aligned], "again"), f"decode only at w={NEW_FIDELITY}, the encoded face reused"),
        time_row(f"aligned face, w = 0 ({label})", None, best(results["ours-aligned"], "zero"),
                 best(results[aligned], "zero"), "torch skips the CFT blocks at w = 0; the graph, with w an input, "
                 "runs them (and adds 0 x their term)"),
        memory_row(f"peak RSS, aligned face ({label})", results, ("reference-aligned", "ours-aligned", aligned)),
    ]
    if whole not in results:
        return rows
    faces = fastest(results[whole])["faces"]
    ref, on_torch, on_ort = (best(results[kind], "run") for kind in ("reference-whole", "ours-whole", whole))
    rows += [
        time_row(f"whole photo, {faces} faces, end to end ({label})", ref, on_torch, on_ort,
                 f"detection excluded; per face {ref['s'] / faces:.2f} s (reference), {on_torch['s'] / faces:.2f} s "
                 f"(torch), {on_ort['s'] / faces:.2f} s (onnxruntime)"),
        time_row(f"whole photo, new fidelity ({label})", None, best(results["ours-whole"], "again"),
                 best(results[whole], "again"), "decode and paste only"),
        memory_row(f"peak RSS, whole photo ({label})", results, ("reference-whole", "ours-whole", whole)),
    ]
    if "gpu_mb" in fastest(results[whole]):
        rows.append(memory_row(f"peak GPU memory by torch, whole photo ({label})", results,
                               ("reference-whole", "ours-whole", whole), key="gpu_mb"))
    return rows


def report(results: Results, args: argparse.Namespace, load_start: tuple[float, ...]) -> str:
    import onnxruntime

    from codeformer_core.export.onnx_export import OPSET

    cuda = args.device.startswith("cuda")
    rows = rows_for(results, "ort", "onnxruntime, TensorRT first" if cuda else "onnxruntime")
    if "ours-aligned-ort-cuda" in results:
        rows += rows_for(results, "ort-cuda", "onnxruntime, CUDA provider")
    table = ["| measurement | reference | ours, torch | ours, onnxruntime | onnxruntime vs reference | onnxruntime vs "
             "torch | CPU-time, onnxruntime vs torch | notes |", "|---|---|---|---|---|---|---|---|", *rows]
    facts = (f"- onnxruntime {onnxruntime.__version__}, providers available: "
             f"{', '.join(onnxruntime.get_available_providers())}; graphs exported at opset {OPSET}, float32.",)
    return document(
        "CodeFormer on ONNX Runtime against the reference path and our torch backend", results, args, load_start,
        table,
        "Ratios above 1: onnxruntime is faster (or smaller). Reference = spandrel's CodeFormer + facexlib's helper "
        "(bench.py); ours = our pipeline, which differs between the two columns only in what runs CodeFormer "
        "(detector, ParseNet and paste-back run on torch in both). Whole photo: `samples/whole/00.jpg`, upscale 2, "
        f"no background upsampler, parse-mask paste-back, w={FIDELITY}.",
        facts,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser, "results-onnx-<device>.md")
    args = parser.parse_args()
    load_start = os.getloadavg()
    weights_dir = ensure_bench_weights(args.weights_dir or default_cache_dir())
    from codeformer_core.export.graph_cache import cache_dir, ensure_graphs

    print("[bench] exporting the graphs (once per checkpoint)", file=sys.stderr, flush=True)
    ensure_graphs("restore", weights_dir / CODEFORMER_FILE, cache_dir(weights_dir))
    cuda = torch.device(args.device).type == "cuda"
    aligned = ("reference-aligned", "ours-aligned", "ours-aligned-ort") + (("ours-aligned-ort-cuda",) if cuda else ())
    whole = tuple(kind.replace("aligned", "whole") for kind in aligned)
    results = run_kinds(aligned + (() if args.quick else whole), args, weights_dir)
    publish(report(results, args, load_start), args, f"results-onnx-{torch.device(args.device).type}.md")


if __name__ == "__main__":
    main()
