"""Paste-back of a photo's faces: the first render's (blends made) against a re-render's (blends kept).

A re-render at another w, or with a face left out or put back, changes only the faces' pixels; their blends into
the output (region, warped square, soft mask bounded by the parse mask) are kept with the image's prepared faces.
Runs on the 4-face sample photo as the GPU check gives it (bench/gpu_check/faces-00.json: the landmarks our dlib
run found), at the pipeline's working size and upscale 2, with stand-in faces and parse masks (paste-back costs
the same whatever their pixels).

    PYTHONPATH=. .venv/bin/python -m bench.paste_back [--repeats 30]
"""

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from codeformer_core.faces.alignment import estimate_alignment
from codeformer_core.faces.paste import blend_faces, face_blend, paste_faces
from codeformer_core.images import enlarge_small, read_image
from codeformer_core.layouts import FACE_SIZE
from tests.support.shared_data import samples_dir

FACES_FILE = Path(__file__).parent / "gpu_check" / "faces-00.json"
UPSCALE = 2


def median_ms(work: Callable[[], object], repeats: int) -> float:
    work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    working, factor = enlarge_small(read_image(samples_dir() / "whole" / "00.jpg"))
    height, width = working.bgr.shape[:2]
    background = cv2.resize(working.bgr, (width * UPSCALE, height * UPSCALE), interpolation=cv2.INTER_LINEAR)
    given = json.loads(FACES_FILE.read_text())["faces"]
    affines = [estimate_alignment(np.array(face["landmarks"], np.float32) * factor) for face in given]
    rng = np.random.default_rng(0)
    faces = [rng.integers(0, 256, (FACE_SIZE, FACE_SIZE, 3), dtype=np.uint8) for _ in affines]
    masks = rng.random((len(affines), FACE_SIZE, FACE_SIZE), dtype=np.float32)
    blends = [face_blend(affine, mask, FACE_SIZE, UPSCALE, background.shape) for affine, mask in zip(affines, masks)]
    first = median_ms(lambda: paste_faces(background, faces, affines, masks, UPSCALE), args.repeats)
    again = median_ms(lambda: blend_faces(background, faces, blends), args.repeats)
    print(f"{len(faces)} faces into {width * UPSCALE}x{height * UPSCALE}, median of {args.repeats}")
    print()
    print("| paste-back | ms | vs first render |")
    print("|---|---|---|")
    print(f"| first render (blends made) | {first:.1f} | 1.00x |")
    print(f"| re-render (blends kept) | {again:.1f} | {first / again:.2f}x faster |")


if __name__ == "__main__":
    main()
