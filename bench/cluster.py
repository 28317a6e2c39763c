"""Images per second on Ray against the single-process command line, on this machine (issue 17).

    .venv/bin/python -m bench.cluster [--images 8] [--actors 1 2]

Each row is one command as a user types it, run as a child process: `python -m codeformer_core restore FOLDER -o OUT
--aligned --device cpu`, alone and then with `--ray --actors N` (a local Ray instance that the command starts and
stops itself; each CPU actor reserves one CPU, so its torch runs one thread, where the single process runs one per
core). The photos are distinct 512x512 aligned faces (the samples, mirrored and turned), one face each, so the
CodeFormer network is the work; the weights are the golden fill (`bench_weights.py`), which cost what the real ones
do. A row with `OMP_NUM_THREADS=1` runs the single process on one thread, as an actor runs.

Two rates per row: images over the whole command's wall time (Python and torch starting, Ray and its actors, the
model loading), and the steady rate, (N - actors) / (last output - first output) from the files' modification
times, which is what a long job converges to. Prints a markdown table. Not a test: CI times nothing.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from bench.bench import cpu_model
from bench.bench_weights import CODEFORMER_FILE, default_cache_dir, ensure_bench_weights
from tests.support.shared_data import samples_dir

REPOSITORY = Path(__file__).resolve().parent.parent
TURNS = (lambda f: f, lambda f: f[:, ::-1], lambda f: f[::-1], lambda f: f[::-1, ::-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="photos per run (at most 20)")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2], help="Ray actor counts to run")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of every row; each row keeps its best round")
    args = parser.parse_args()
    weights = ensure_bench_weights(default_cache_dir(), (CODEFORMER_FILE,))
    print(machine_line(), flush=True)
    runs = [("single process", [], {}, 1), ("single process, one thread", [], {"OMP_NUM_THREADS": "1"}, 1)]
    runs += [(f"Ray, {n} actor(s)", ["--ray", "--actors", str(n)], {}, n) for n in args.actors]
    best: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = write_faces(Path(scratch) / "faces", args.images)
        for round_ in range(args.repeat):
            for index, (name, extra, env, actors) in enumerate(runs):
                output = Path(scratch) / f"out-{round_}-{index}"
                wall, steady = measure(name, extra, env, folder, weights, output, actors)
                earlier = best.get(name, (wall, steady))
                best[name] = (min(wall, earlier[0]), max(steady, earlier[1]))
    print(f"\n{args.images} aligned faces, one each; best of {args.repeat} rounds; load average at the end"
          f" {os.getloadavg()[0]:.1f}\n")
    print("| run | wall s | images/s over the wall time | steady images/s | steady s per image |")
    print("|---|---|---|---|---|")
    for name, (wall, steady) in best.items():
        print(f"| {name} | {wall:.0f} | {args.images / wall:.3f} | {steady:.3f} | {1 / steady:.1f} |")


def write_faces(folder: Path, count: int) -> Path:
    faces = [cv2.imread(str(path)) for path in sorted((samples_dir() / "aligned").glob("*.png"))]
    variants = [np.ascontiguousarray(turn(face)) for turn in TURNS for face in faces]
    if count > len(variants):
        raise SystemExit(f"--images is at most {len(variants)}")
    folder.mkdir(parents=True)
    for index, face in enumerate(variants[:count]):
        cv2.imwrite(str(folder / f"{index:02d}.png"), face)
    return folder


def measure(
    name: str, extra: list[str], env: dict[str, str], folder: Path, weights: Path, output: Path, actors: int
) -> tuple[float, float]:
    """(wall seconds, steady images per second) of one command."""
    command = [sys.executable, "-m", "codeformer_core", "restore", str(folder), "-o", str(output), "--aligned",
               "--device", "cpu", "--weights-dir", str(weights), *extra]  # fmt: skip
    started = time.perf_counter()
    finished = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1", **env})  # fmt: skip
    wall = time.perf_counter() - started
    if finished.returncode != 0:
        raise SystemExit(f"{name} failed:\n{finished.stderr[-3000:]}")
    written = sorted(path.stat().st_mtime for path in output.glob("*.png"))
    steady = (len(written) - actors) / (written[-1] - written[0])
    print(f"{name}: {wall:.0f} s, steady {steady:.3f} images/s (load {os.getloadavg()[0]:.1f})", flush=True)
    return wall, steady


def machine_line() -> str:
    return f"{cpu_model()}, {os.cpu_count()} cores; load average at the start {os.getloadavg()[0]:.1f}"


if __name__ == "__main__":
    main()
