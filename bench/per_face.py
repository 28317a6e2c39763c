"""Face by face at paste-back cost (issue 18): on the 4-face photo, what leaving a face out, putting it back, giving
one face its own w and comparing one face at five w cost, against a full render of the photo.

    .venv/bin/python bench/per_face.py [--repeat N] [--device cpu|cuda] [--weights-dir DIR]

Engine time only (`Pipeline.run` and `Pipeline.fidelity_sweep`; no PNG is written). One process: the first row is
the run that fills the pipeline's cache, the re-renders after it are timed as the page triggers them, each the
minimum over --repeat (each repeat asks for a w not decoded before, so nothing is served twice). Decoded faces are
counted from the pipeline's own progress messages. Prints a markdown table. Not a test.
"""

import argparse
import os
import platform
import re
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from bench_weights import default_cache_dir, ensure_bench_weights

from codeformer_core.images import read_image
from codeformer_core.options import RestoreOptions
from codeformer_core.pipeline import Pipeline, RestoreRequest
from codeformer_core.weights import WeightStore
from tests.support.shared_data import samples_dir

PHOTO = samples_dir() / "whole" / "00.jpg"  # 4 faces, enlarged to 811x512 as officially, output 1622x1024
OPTIONS = RestoreOptions(detector="dlib", upscale=2, fidelity=0.5)  # parse-mask paste-back, no background model
DECODING = re.compile(r"Decoding (\d+) face")

Render = Callable[[int], object]
"""render(repeat number): one re-render of the photo."""


class Counted:
    """Times pipeline calls and counts the faces they decode (from the "Decoding N face(s)" progress messages)."""

    def __init__(self) -> None:
        self.decoded = 0

    def progress(self, _fraction: float, message: str) -> None:
        found = DECODING.match(message)
        self.decoded += int(found.group(1)) if found else 0

    def best_of(self, repeat: int, render: Render) -> tuple[float, int, str]:
        """The fastest of `repeat` renders, the faces one render decoded, and the stages it ran."""
        times, stages = [], ""
        for number in range(repeat):
            self.decoded = 0
            start = time.perf_counter()
            result = render(number)
            times.append(time.perf_counter() - start)
            report = getattr(result, "report", None)
            timings = report.timings if report is not None else result.timings
            stages = ", ".join(name for name, seconds in timings.items() if seconds >= 0.0005)
        return min(times), self.decoded, stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="re-renders per row; the fastest is kept")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--weights-dir", type=Path, default=None, help="bench weights (default: a user cache dir)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    weights = ensure_bench_weights(args.weights_dir or default_cache_dir())
    pipeline = Pipeline(WeightStore(weights, allow_url_fallback=False), device=args.device)
    photo = read_image(PHOTO)
    counted = Counted()

    def run(options: RestoreOptions) -> object:
        return pipeline.run(RestoreRequest(photo, options), progress=counted.progress)

    load_start = os.getloadavg()
    pipeline.models.codeformer("restore")  # loading is not what the rows measure
    pipeline.models.parser()
    pipeline.models.detector("dlib")
    rows = [
        ("full render: detect, align, encode, decode and parse 4 faces, paste", 1, lambda n: run(OPTIONS)),
        ("leave face 1 out (paste-back only)", args.repeat, lambda n: run(replace(OPTIONS, skip_faces=(1,)))),
        ("put face 1 back (paste-back only)", args.repeat, lambda n: run(OPTIONS)),
        ("face 2 at its own new w (one face decoded)", args.repeat,
         lambda n: run(replace(OPTIONS, face_fidelities={2: 0.3 + 0.01 * n}))),
        ("every face at a new w (the main slider: four faces decoded)", args.repeat,
         lambda n: run(replace(OPTIONS, fidelity=0.8 + 0.01 * n))),
        ("compare face 3 at w = 0, 0.25, 0.5, 0.75, 1 (0.5 kept: four decodes)", 1,
         lambda n: pipeline.fidelity_sweep(RestoreRequest(photo, OPTIONS), 3, progress=counted.progress)),
    ]  # fmt: skip
    measured = [(name, *counted.best_of(repeat, render)) for name, repeat, render in rows]
    full = measured[0][1]
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())  # fmt: skip
    print(f"# Face by face on `samples/whole/00.jpg` (4 faces, upscale 2, parse-mask paste-back), {args.device}\n")
    print(f"- Machine: {model}, {os.cpu_count()} cores, {torch.backends.cpu.get_cpu_capability()}, torch "
          f"{torch.__version__}; load average {load_start[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end.")
    print(f"- Re-render rows: the fastest of {args.repeat}; models loaded before the first row.\n")
    print("| what changed | engine time | vs full render | faces decoded | stages run |")
    print("|---|---|---|---|---|")
    for name, seconds, decoded, stages in measured:
        print(f"| {name} | {seconds:.3f} s | {seconds / full:.2%} | {decoded} | {stages} |")


if __name__ == "__main__":
    main()
